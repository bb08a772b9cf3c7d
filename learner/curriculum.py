"""The curriculum controller: which tier the actors train on, and when that changes (method.md §4).

A pure state machine: no I/O, no Ray, no Redis. The learner's shell feeds it episode outcomes
(from the actors) and validation results (from the evaluation actors) and acts on the events it
returns: it writes the tier to the control plane, scales the learning rates, takes or drops the
KL snapshot and appends each event to the audit stream.

**Generations.** Every tier change starts a new *generation*. Actors stamp each episode with the
generation they ran it under; outcomes and validations of any other generation are counted as
stale and otherwise ignored. That is the guard against flapping: the episodes that justified a
promotion (or were collected before a rollback) can never count towards the next decision.

**Promotion: the "double-80" gate.** The gate passes when the latest ``gate_episodes`` (80)
episodes of the current generation — a full sliding window of consecutive episodes — contain at
least ``gate_success`` (80 %) successes: ``successes ≥ gate_success × gate_episodes``, so exactly
64 of 80 passes and 63 does not. On the last tier the gate is still tracked but nothing follows.
``gate_source`` says which episodes count: the actors' training episodes, or the deterministic
policy's validations (a validation's episodes join the window only when it does not roll back).
A promotion multiplies the learning-rate scale by ``promotion_lr_factor`` (halves it), keeps the
weights and the replay buffer (only the environment changes), and asks for a KL snapshot of the
policy that passed the gate.

**Rollback.** A tier's *reference* is its best validation so far in this generation (the first
validation sets it; a later one with a higher success rate replaces it, collision rate
included). A validation rolls back to the previous tier when its success rate is more than
``rollback_success_drop`` (10 %) below the reference's, relatively — ``success < reference ×
(1 − 0.10)`` — or when its collision rate is more than ``rollback_collision_rise`` (20 %) above the
reference's, relatively, and by at least ``collision_rise_floor`` in absolute terms (so a reference
of 0 collisions is not undone by one unlucky episode). Both must hold beyond sampling noise: with
``rollback_confidence`` (95 %) the validation's whole Wilson interval must lie past the threshold,
so a 50-episode validation does not roll back on chance alone. The learning-rate scale is cut by
``rollback_lr_factor``. The first tier has nowhere to roll back to: a regression there is
reported as such and changes nothing else.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal

from graspfleet.confidence import wilson_interval
from graspfleet.config import require
from graspfleet.interfaces import EpisodeOutcome
from graspfleet.sim.tiers import TIER_ORDER

EventKind = Literal["promotion", "rollback", "regression"]


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """When tiers change and what a change does (method.md §4 gives the numbers)."""

    enabled: bool = True
    """Off: the run stays on ``train.tier``."""
    tiers: tuple[str, ...] = TIER_ORDER
    """The ladder, easiest first; ``train.tier`` is where a run starts."""
    gate_success: float = 0.8
    """Double-80: the success rate the window must reach …"""
    gate_episodes: int = 80
    """… over this many consecutive episodes of the current tier …"""
    gate_source: Literal["training", "validation"] = "validation"
    """… counting the deterministic policy's validation episodes (the policy that is deployed) or
    the actors' training episodes, whose exploration noise keeps their success far below it (a
    median of 34 % against 77 %, never above 66 %, over 99 paired measurements on T0:
    docs/experiments/2026-12-06-stability-and-the-gate.md), so that a gate fed by them rarely passes.
    A validation's episodes run side by side in several cells, so their order carries nothing:
    they enter the window spread evenly, successes among failures, and only after the rollback
    rule has passed the validation."""
    promotion_lr_factor: float = 0.5
    """Learning-rate scale multiplier on each promotion (seed: halve it)."""
    rollback_success_drop: float = 0.10
    """Relative drop of validation success below the tier's reference that rolls back (seed: 10 %)."""
    rollback_collision_rise: float = 0.20
    """Relative rise of the validation collision rate above the reference that rolls back (seed: 20 %)."""
    collision_rise_floor: float = 0.02
    """… and the smallest absolute rise that counts (2 episodes in 100)."""
    rollback_confidence: float = 0.95
    """A drop or rise must hold beyond sampling noise: the validation's Wilson interval at this
    confidence must lie wholly past the threshold (0: compare the measured rates alone). With 50
    episodes at 50 % success, noise alone moves a validation by ±14 %, relatively."""
    rollback_lr_factor: float = 0.5
    """Learning-rate scale multiplier on each rollback ("cut the learning rate further")."""
    min_lr_scale: float = 1 / 64
    """The scale never drops below this."""
    validate_every: int = 2_000
    """Learner updates between validations of the deterministic policy on the current tier."""
    validation_episodes: int = 50
    kl_weight: float = 1.0
    """Weight of KL(π_θ ‖ π_θ,prev-tier) on the first promoted tier, relative to the batch's mean |Q| …"""
    kl_decay: float = 0.5
    """… multiplied by this for each tier further up (seed: a weight that decays per tier)."""

    def __post_init__(self) -> None:
        require(len(self.tiers) >= 1, "curriculum.tiers: must name at least one tier")
        require(len(set(self.tiers)) == len(self.tiers), "curriculum.tiers: a tier is named twice")
        for tier in self.tiers:
            require(tier in TIER_ORDER, f"curriculum.tiers: unknown tier {tier!r} (known: {', '.join(TIER_ORDER)})")
        require(0 < self.gate_success <= 1, "curriculum.gate_success: must be in (0, 1]")
        require(self.gate_episodes >= 1, "curriculum.gate_episodes: must be >= 1")
        require(
            self.gate_source in ("training", "validation"),
            f"curriculum.gate_source: expected training or validation, got {self.gate_source!r}",
        )
        for name in ("promotion_lr_factor", "rollback_lr_factor", "min_lr_scale"):
            require(0 < getattr(self, name) <= 1, f"curriculum.{name}: must be in (0, 1]")
        require(0 < self.rollback_success_drop < 1, "curriculum.rollback_success_drop: must be in (0, 1)")
        require(self.rollback_collision_rise > 0, "curriculum.rollback_collision_rise: must be > 0")
        require(0 <= self.collision_rise_floor <= 1, "curriculum.collision_rise_floor: must be in [0, 1]")
        require(0 <= self.rollback_confidence < 1, "curriculum.rollback_confidence: must be in [0, 1)")
        require(self.validate_every >= 1, "curriculum.validate_every: must be >= 1")
        require(self.validation_episodes >= 1, "curriculum.validation_episodes: must be >= 1")
        require(self.kl_weight >= 0, "curriculum.kl_weight: must be >= 0")
        require(0 <= self.kl_decay <= 1, "curriculum.kl_decay: must be in [0, 1]")


@dataclasses.dataclass(frozen=True)
class ValidationResult:
    """Deterministic-policy episodes on the current tier, run by an evaluation actor."""

    generation: int
    episodes: int
    success_rate: float
    collision_rate: float
    weights_version: int = -1


@dataclasses.dataclass(frozen=True)
class CurriculumEvent:
    """A decision and the numbers that justified it."""

    kind: EventKind
    from_tier: str
    to_tier: str
    generation: int
    """The generation after the event."""
    lr_scale_before: float
    lr_scale_after: float
    metrics: Mapping[str, float]
    """Promotions: the gate window's success rate and size; rollbacks and regressions: the
    validation and the reference it was compared with."""


class CurriculumController:
    """The tier, the gate window, the reference and the learning-rate scale, moved by outcomes."""

    def __init__(self, config: CurriculumConfig, start_tier: str) -> None:
        require(
            start_tier in config.tiers,
            f"curriculum: the start tier {start_tier!r} is not on the ladder {', '.join(config.tiers)}",
        )
        self.config = config
        self.tier_index = config.tiers.index(start_tier)
        self.generation = 0
        self.lr_scale = 1.0
        self.promotions = 0
        self.rollbacks = 0
        self.stale = 0
        """Outcomes and validations ignored because they belong to an earlier generation."""
        self.window: collections.deque[bool] = collections.deque(maxlen=config.gate_episodes)
        self.reference: ValidationResult | None = None

    @property
    def tier(self) -> str:
        return self.config.tiers[self.tier_index]

    @property
    def gate_successes(self) -> int:
        return sum(self.window)

    @property
    def gate_required(self) -> int:
        """Successes the full window needs (64 of 80 with the method's numbers)."""
        # the tolerance keeps 0.8 × 80 = 64.00000000000001 from demanding 65
        return math.ceil(self.config.gate_success * self.config.gate_episodes - 1e-9)

    def kl_weight(self) -> float:
        """The KL regularizer's weight on the current tier (0 on the first tier of the ladder)."""
        if self.tier_index == 0:
            return 0.0
        return self.config.kl_weight * self.config.kl_decay ** (self.tier_index - 1)

    def record_episode(self, outcome: EpisodeOutcome) -> CurriculumEvent | None:
        """Fold in one training episode; a promotion when it completes the gate (only when the
        gate counts training episodes)."""
        if outcome.generation != self.generation:
            self.stale += 1
            return None
        if self.config.gate_source != "training":
            return None
        self.window.append(outcome.policy_success)
        return self._gate()

    def _gate(self) -> CurriculumEvent | None:
        """A promotion when the window is full and holds the successes it needs."""
        if len(self.window) < self.config.gate_episodes or self.gate_successes < self.gate_required:
            return None
        if self.tier_index == len(self.config.tiers) - 1:
            return None
        metrics = {"gate_success_rate": self.gate_successes / len(self.window), "gate_episodes": len(self.window)}
        return self._move("promotion", +1, self.config.promotion_lr_factor, metrics)

    def record_validation(self, result: ValidationResult) -> CurriculumEvent | None:
        """Fold in one validation; a rollback (or, on the first tier, a regression) when it fails
        the reference, else it may become the reference."""
        if result.generation != self.generation:
            self.stale += 1
            return None
        reference = self.reference
        if reference is None or result.success_rate > reference.success_rate:
            self.reference = result
            return self._count_validation(result)
        cfg = self.config
        success_high, collision_low = result.success_rate, result.collision_rate
        if cfg.rollback_confidence > 0:
            n = result.episodes
            success_high = wilson_interval(result.success_rate * n, n, cfg.rollback_confidence)[1]
            collision_low = wilson_interval(result.collision_rate * n, n, cfg.rollback_confidence)[0]
        dropped = success_high < reference.success_rate * (1 - cfg.rollback_success_drop)
        rise = collision_low - reference.collision_rate
        collided = rise > cfg.rollback_collision_rise * reference.collision_rate and rise >= cfg.collision_rise_floor
        if not (dropped or collided):
            return self._count_validation(result)
        metrics = {
            "validation_success_rate": result.success_rate,
            "validation_collision_rate": result.collision_rate,
            "reference_success_rate": reference.success_rate,
            "reference_collision_rate": reference.collision_rate,
            "validation_weights_version": result.weights_version,
            "reference_weights_version": reference.weights_version,
        }
        if self.tier_index == 0:
            return CurriculumEvent(
                "regression", self.tier, self.tier, self.generation, self.lr_scale, self.lr_scale, metrics
            )
        return self._move("rollback", -1, cfg.rollback_lr_factor, metrics)

    def _count_validation(self, result: ValidationResult) -> CurriculumEvent | None:
        """With validations feeding the gate: the validation's episodes into the window, spread
        evenly (episode k is a success when ⌊(k + 1)·s/n⌋ > ⌊k·s/n⌋, s successes of n); then the gate."""
        if self.config.gate_source != "validation":
            return None
        n = result.episodes
        successes = round(result.success_rate * n)
        self.window.extend((k + 1) * successes // n > k * successes // n for k in range(n))
        return self._gate()

    def _move(self, kind: EventKind, step: int, lr_factor: float, metrics: dict[str, float]) -> CurriculumEvent:
        before, scale_before = self.tier, self.lr_scale
        self.tier_index += step
        self.generation += 1
        self.lr_scale = max(self.lr_scale * lr_factor, self.config.min_lr_scale)
        self.window.clear()
        self.reference = None
        if kind == "promotion":
            self.promotions += 1
        else:
            self.rollbacks += 1
        return CurriculumEvent(kind, before, self.tier, self.generation, scale_before, self.lr_scale, metrics)

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state, for the learner checkpoint and the control plane."""
        return {
            "tier": self.tier,
            "generation": self.generation,
            "lr_scale": self.lr_scale,
            "promotions": self.promotions,
            "rollbacks": self.rollbacks,
            "stale": self.stale,
            "window": [int(x) for x in self.window],
            "reference": None if self.reference is None else dataclasses.asdict(self.reference),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require(
            state["tier"] in self.config.tiers,
            f"curriculum: the saved tier {state['tier']!r} is not on the ladder {', '.join(self.config.tiers)}",
        )
        self.tier_index = self.config.tiers.index(state["tier"])
        self.generation = int(state["generation"])
        self.lr_scale = float(state["lr_scale"])
        self.promotions = int(state["promotions"])
        self.rollbacks = int(state["rollbacks"])
        self.stale = int(state["stale"])
        self.window = collections.deque((bool(x) for x in state["window"]), maxlen=self.config.gate_episodes)
        reference = state["reference"]
        self.reference = None if reference is None else ValidationResult(**reference)
