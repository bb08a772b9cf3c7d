"""The learner's side of a run: the learner a config trains, its expert demonstrations (and the
expert's interventions routed to them), and the priorities it hands back to prioritized replay."""

from __future__ import annotations

import numpy as np
import torch

from actors.demonstrations import collect_demonstrations
from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.ik_torch import TorchArmKinematics
from graspfleet.sim.tiers import TIER_ORDER, get_tier
from graspfleet.spec import OBSERVATION_KEYS, observation_spec
from learner.sac import Batch, SACLearner, batch_from_columns, resolve_device
from orchestrator.config import TrainConfig, demonstration_rows
from replay.config import ShardConfig
from replay.table import ReplayTable, SampleResult

TRANSITION_COLUMNS = (
    *OBSERVATION_KEYS,
    *(f"next_{k}" for k in OBSERVATION_KEYS),
    "action",
    "reward",
    "terminated",
    "horizon",
)
"""The columns of a sampled transition the learner's batches are made of."""


def new_priorities(learner: SACLearner, replay: ShardConfig) -> np.ndarray:
    """Priorities of the last update's replay rows: |TD error| + ``replay.priority_epsilon``."""
    return learner.last_td_errors.cpu().numpy().astype(np.float64) + replay.priority_epsilon


def make_learner(config: TrainConfig, device: str | None = None) -> SACLearner:
    """The learner a run of ``config`` trains (on ``device``, default the config's)."""
    device = config.learning.device if device is None else device
    arm = TorchArmKinematics(config.cell, device=resolve_device(device)) if config.sac.reachability_weight > 0 else None
    return SACLearner(
        observation_spec(config.cell),
        cartesian_action_bounds(config.cell, config.action),
        config.network,
        config.sac,
        device,
        kinematics=None if arm is None else (arm, config.action),
    )


def transition_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The :data:`TRANSITION_COLUMNS` of sampled replay columns (one-step samples get horizon 1)."""
    picked = {name: np.asarray(columns[name]) for name in TRANSITION_COLUMNS if name in columns}
    picked.setdefault("horizon", np.ones(len(picked["reward"]), np.int32))
    return picked


class TransitionRing:
    """The latest ``capacity`` transitions handed to it (sampled replay rows), oldest overwritten
    first, each kept once: a row is known by its shard and key."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.columns: dict[str, np.ndarray] = {}
        self.origin: list[tuple[str, int] | None] = [None] * capacity
        """(shard, key) of the row in each slot."""
        self.held: set[tuple[str, int]] = set()
        self.size = 0
        self.next = 0
        self.added = 0
        """Rows added since creation (each counted once, however often it was handed over)."""
        self.rng = np.random.default_rng(seed)

    def add(self, sample: SampleResult, rows: np.ndarray) -> int:
        """Keep ``sample``'s rows at indices ``rows`` that it does not hold yet; returns how many."""
        # a batch drawn with replacement may hold a row twice: keep its first
        first = {(sample.shard, int(sample.keys[r])): int(r) for r in reversed(rows)}
        fresh = [row for origin, row in first.items() if origin not in self.held]
        if not fresh:
            return 0
        columns = transition_columns(sample.columns)
        if not self.columns:
            self.columns = {name: np.empty((self.capacity, *c.shape[1:]), c.dtype) for name, c in columns.items()}
        for row in fresh:
            slot, origin = self.next, (sample.shard, int(sample.keys[row]))
            for name, store in self.columns.items():
                store[slot] = columns[name][row]
            old = self.origin[slot]
            if old is not None:
                self.held.discard(old)
            self.origin[slot] = origin
            self.held.add(origin)
            self.next = (slot + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)
        self.added += len(fresh)
        return len(fresh)

    def sample(self, count: int) -> dict[str, np.ndarray]:
        """``count`` rows drawn uniformly with replacement (needs a row held)."""
        rows = self.rng.integers(0, self.size, count)
        return {name: store[rows] for name, store in self.columns.items()}


class DemonstrationBatches:
    """The learner's share of expert transitions per batch (none when no demonstrations are loaded),
    from the scripted expert's successful episodes on the tier the actors are on — a tier change
    replaces them (:meth:`switch_tier`), so imitation never pulls towards an easier tier's grasps —
    and, with interventions enabled, the expert's takeovers in the actors' episodes that the
    learner drew from replay (:meth:`route`; HIL-SERL's intervention buffer). Demonstration and
    routed rows are drawn in proportion to how many of each are held."""

    def __init__(self, config: TrainConfig, device: torch.device, tier: str | None = None) -> None:
        self.config = config
        self.device = device
        self.steps = 0
        """Control steps of all the expert episodes collected so far, every tier included."""
        self.tier: str | None = None
        self.table: ReplayTable | None = None
        self.rows = 0
        """Transitions of the current demonstrations."""
        self.size = demonstration_rows(config)
        self.routed: TransitionRing | None = None
        """The current tier's intervention transitions routed here (None without interventions or
        demonstrations)."""
        self.routed_rows = 0
        """Intervention transitions routed so far, every tier included."""
        self.rng = np.random.default_rng(config.seed + 30_000)
        self.switch_tier(tier or config.tier)

    def switch_tier(self, tier: str) -> None:
        """Collect ``demonstrations`` expert episodes on ``tier`` in place of the current ones."""
        if self.size == 0 or tier == self.tier:
            return
        demos = collect_demonstrations(
            self.config.cell,
            get_tier(tier),
            self.config.action,
            self.config.learning.demonstrations,
            seed=self.config.seed + 10_000 + TIER_ORDER.index(tier),
            chunk_length=self.config.actors.chunk_length,
            expert=self.config.learning.expert,
        )
        self.tier, self.table, self.rows = tier, demos.table, demos.env_steps
        self.steps += demos.env_steps
        if self.config.interventions.enabled:
            self.routed = TransitionRing(self.config.interventions.routed_rows, self.config.seed + 20_000)

    def route(self, sample: SampleResult) -> int:
        """Keep the replay rows of ``sample`` on the current tier that the expert chose
        (``intervention``) among the demonstrations' share; returns how many were new."""
        if self.routed is None or self.tier is None:
            return 0
        rows = np.flatnonzero(
            np.asarray(sample.columns["intervention"]) & (sample.tiers == TIER_ORDER.index(self.tier))
        )
        added = self.routed.add(sample, rows)
        self.routed_rows += added
        return added

    def sample(self) -> Batch | None:
        if self.table is None or self.size == 0:
            return None
        held = self.routed.size if self.routed is not None else 0
        from_routed = int(self.rng.binomial(self.size, held / (held + self.rows))) if held else 0
        parts = []
        if from_routed < self.size:
            parts.append(
                transition_columns(self.table.sample(self.size - from_routed, n_step=self.config.sac.n_step).columns)
            )
        if from_routed:
            assert self.routed is not None
            parts.append(self.routed.sample(from_routed))
        columns = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return batch_from_columns(columns, self.device)
