"""The curriculum in a run: the pure controller (:mod:`learner.curriculum`) wired to the learner,
the published weights, the actors' tier, the audit trail, the metrics and the run directory.

Serial and distributed runs use the same :class:`RunCurriculum`; they differ only in the
callables they hand it (where the tier goes, where audit events go, how a version is published).
On a promotion or rollback it:

1. moves the KL reference: a promotion pushes the version the actors were running (the policy
   that passed the gate) onto the snapshot stack, a rollback pops it; the learner regularizes
   towards the top of the stack with the tier's decayed weight (no reference on the first tier);
2. sets the learner's learning-rate scale (halved on promotion, cut further on rollback);
3. publishes the new tier and generation (actors switch within one version check);
4. publishes a new weights version, so every event has a version before and after it;
5. appends the decision, the learning-rate change and the gate reset to the audit trail, with
   the metrics that justified them, and a row to ``curriculum.csv`` (tier over time).

Its state (the controller's, the snapshot stack, the validation schedule) goes into the learner
checkpoint and the control plane, so a restarted learner resumes mid-curriculum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from graspfleet.interfaces import EpisodeOutcome, WeightSource
from graspfleet.sim.tiers import TIER_ORDER
from graspfleet.weights import deserialize
from learner.curriculum import CurriculumConfig, CurriculumController, CurriculumEvent, ValidationResult
from learner.sac import SACLearner

CURRICULUM_STREAM = "curriculum:events"
"""The control plane stream every curriculum event is appended to."""


class CurriculumMetrics:
    """The curriculum's Prometheus series (``graspfleet_curriculum_*``, ``graspfleet_validation_*``)."""

    def __init__(self, registry: CollectorRegistry, tiers: tuple[str, ...]) -> None:
        self.tiers = tiers
        self.tier = Gauge(
            "graspfleet_curriculum_tier", "The current tier: its index in T0, T1, …, T4", registry=registry
        )
        self.tier_info = Gauge(
            "graspfleet_curriculum_current_tier",
            "1 for the current tier, 0 for the others",
            ["tier"],
            registry=registry,
        )
        self.generation = Gauge(
            "graspfleet_curriculum_generation", "Tier changes so far (the current generation)", registry=registry
        )
        self.promotions = Counter(
            "graspfleet_curriculum_promotions", "Promotions to the next tier", ["tier"], registry=registry
        )
        self.rollbacks = Counter(
            "graspfleet_curriculum_rollbacks", "Rollbacks to the previous tier", ["tier"], registry=registry
        )
        self.regressions = Counter(
            "graspfleet_curriculum_regressions",
            "Failed validations on the first tier (nothing to roll back to)",
            registry=registry,
        )
        self.gate_episodes = Gauge(
            "graspfleet_curriculum_gate_episodes", "Episodes in the double-80 gate window", registry=registry
        )
        self.gate_window = Gauge(
            "graspfleet_curriculum_gate_window", "Episodes the gate window needs", registry=registry
        )
        self.gate_success_rate = Gauge(
            "graspfleet_curriculum_gate_success_rate", "Success rate over the gate window", registry=registry
        )
        self.gate_threshold = Gauge(
            "graspfleet_curriculum_gate_threshold", "Success rate the gate needs", registry=registry
        )
        self.lr_scale = Gauge(
            "graspfleet_curriculum_lr_scale", "Learning-rate scale set by promotions and rollbacks", registry=registry
        )
        self.kl_weight = Gauge("graspfleet_curriculum_kl_weight", "Weight of the KL regularizer", registry=registry)
        self.stale = Gauge(
            "graspfleet_curriculum_stale_outcomes",
            "Outcomes and validations ignored as belonging to an earlier generation",
            registry=registry,
        )
        self.validation_success = Gauge(
            "graspfleet_validation_success_rate", "Latest validation success rate", ["tier"], registry=registry
        )
        self.validation_collision = Gauge(
            "graspfleet_validation_collision_rate", "Latest validation collision rate", ["tier"], registry=registry
        )
        self.reference_success = Gauge(
            "graspfleet_validation_reference_success_rate",
            "The tier's reference validation success rate (rollbacks compare with it)",
            registry=registry,
        )
        for tier in tiers:  # every series exists from the start, so rate() and increase() work
            self.promotions.labels(tier=tier)
            self.rollbacks.labels(tier=tier)

    def show(self, controller: CurriculumController, kl_weight: float) -> None:
        self.tier.set(TIER_ORDER.index(controller.tier))
        for tier in self.tiers:
            self.tier_info.labels(tier=tier).set(float(tier == controller.tier))
        self.generation.set(controller.generation)
        self.gate_episodes.set(len(controller.window))
        self.gate_window.set(controller.config.gate_episodes)
        self.gate_success_rate.set(controller.gate_successes / len(controller.window) if controller.window else 0.0)
        self.gate_threshold.set(controller.config.gate_success)
        self.lr_scale.set(controller.lr_scale)
        self.kl_weight.set(kl_weight)
        self.stale.set(controller.stale)
        reference = controller.reference
        self.reference_success.set(reference.success_rate if reference is not None else 0.0)


class RunCurriculum:
    """The controller and what its decisions do to a run."""

    def __init__(
        self,
        config: CurriculumConfig,
        start_tier: str,
        learner: SACLearner,
        weights: WeightSource,
        publish: Callable[[], int],
        set_tier: Callable[[str, int, Mapping[str, Any]], None],
        audit: Callable[[str, Mapping[str, str | int | float]], None] | None = None,
        metrics: CurriculumMetrics | None = None,
        run_dir: Path | None = None,
    ) -> None:
        """``publish()`` publishes the learner's current policy as a new version and returns it;
        ``set_tier(tier, generation, state)`` tells the actors; ``audit(kind, fields)`` records an event."""
        self.config = config
        self.controller = CurriculumController(config, start_tier)
        self.learner = learner
        self.weights = weights
        self.publish = publish
        self.set_tier = set_tier
        self.audit = audit
        self.metrics = metrics
        self.history_path = None if run_dir is None else run_dir / "curriculum.csv"
        self.snapshots: list[int] = []
        """Weights versions of the policies that passed each gate so far (the KL references)."""
        self.last_validation = 0
        """Learner updates at the latest validation request."""

    @property
    def tier(self) -> str:
        return self.controller.tier

    @property
    def generation(self) -> int:
        return self.controller.generation

    def start(self, state: Mapping[str, Any] | None, at: Mapping[str, float]) -> None:
        """Begin (or, with a saved ``state``, resume) and publish the tier."""
        if state is not None:
            self.controller.load_state_dict(state["controller"])
            self.snapshots = [int(v) for v in state["snapshots"]]
            self.last_validation = int(state["last_validation"])
            self._load_reference()
        self.set_tier(self.tier, self.generation, self.state())
        self._history("resume" if state is not None else "start", at)
        self._show()

    def state(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "snapshots": list(self.snapshots),
            "last_validation": self.last_validation,
        }

    def validation_due(self, updates: int) -> bool:
        """Whether a validation should be requested now (then call :meth:`validation_requested`)."""
        return updates - self.last_validation >= self.config.validate_every

    def validation_requested(self, updates: int) -> None:
        self.last_validation = updates

    def record_outcomes(self, outcomes: list[EpisodeOutcome], at: Mapping[str, float]) -> list[CurriculumEvent]:
        """Feed training episodes to the gate; apply and return the decisions they caused."""
        events = []
        for outcome in outcomes:
            event = self.controller.record_episode(outcome)
            if event is not None:
                self._apply(event, at)
                events.append(event)
        self._show()
        return events

    def record_validation(self, result: ValidationResult, at: Mapping[str, float]) -> CurriculumEvent | None:
        """Feed a validation to the rollback rule; apply and return the decision it caused."""
        tier, fresh = self.tier, result.generation == self.generation
        event = self.controller.record_validation(result)
        if fresh and self.metrics is not None:
            self.metrics.validation_success.labels(tier=tier).set(result.success_rate)
            self.metrics.validation_collision.labels(tier=tier).set(result.collision_rate)
        if event is not None:
            self._apply(event, at)
        self._show()
        return event

    def _apply(self, event: CurriculumEvent, at: Mapping[str, float]) -> None:
        before = self.weights.latest_version()
        after = before
        if event.kind in ("promotion", "rollback"):
            if event.kind == "promotion":
                self.snapshots.append(before)
            elif self.snapshots:
                self.snapshots.pop()
            self._load_reference()
            self.learner.set_lr_scale(self.controller.lr_scale)
            self.set_tier(self.tier, self.generation, self.state())
            after = self.publish()
        common = {"updates": int(at.get("updates", 0)), "env_steps": int(at.get("env_steps", 0))}
        if self.audit is not None:
            self.audit(
                event.kind,
                {
                    "from_tier": event.from_tier,
                    "to_tier": event.to_tier,
                    "generation": event.generation,
                    "lr_scale_before": event.lr_scale_before,
                    "lr_scale_after": event.lr_scale_after,
                    "weights_version_before": before,
                    "weights_version_after": after,
                    **common,
                    **event.metrics,
                },
            )
            if event.lr_scale_after != event.lr_scale_before:
                self.audit(
                    "lr_change",
                    {
                        "reason": event.kind,
                        "tier": event.to_tier,
                        "lr_scale_before": event.lr_scale_before,
                        "lr_scale_after": event.lr_scale_after,
                        **common,
                    },
                )
            if event.kind != "regression":
                self.audit(
                    "gate_reset",
                    {"reason": event.kind, "tier": event.to_tier, "generation": event.generation, **common},
                )
        if self.metrics is not None:
            if event.kind == "promotion":
                self.metrics.promotions.labels(tier=event.to_tier).inc()
            elif event.kind == "rollback":
                self.metrics.rollbacks.labels(tier=event.from_tier).inc()
            else:
                self.metrics.regressions.inc()
        self._history(event.kind, at)

    def _load_reference(self) -> None:
        """The KL reference for the current tier: the top snapshot, or none on the first tier."""
        weight = self.controller.kl_weight()
        if not self.snapshots or weight == 0:
            self.learner.set_kl_reference(None, 0.0)
            return
        fetched = self.weights.fetch_weights(self.snapshots[-1])
        if fetched is None:
            raise RuntimeError(f"curriculum: weights version {self.snapshots[-1]} (the KL reference) is gone")
        self.learner.set_kl_reference(deserialize(fetched[1]).tensors, weight)

    def _show(self) -> None:
        if self.metrics is not None:
            self.metrics.show(self.controller, self.learner.kl_weight)

    def _history(self, kind: str, at: Mapping[str, float]) -> None:
        """A row of ``curriculum.csv``: the tier from this moment on."""
        if self.history_path is None:
            return
        new = not self.history_path.exists()
        with self.history_path.open("a") as handle:
            if new:
                handle.write("unix_time,seconds,env_steps,updates,event,tier,tier_index,generation,lr_scale\n")
            handle.write(
                f"{time.time():.3f},{at.get('seconds', 0.0):.2f},{int(at.get('env_steps', 0))},"
                f"{int(at.get('updates', 0))},{kind},{self.tier},{TIER_ORDER.index(self.tier)},"
                f"{self.generation},{self.controller.lr_scale:g}\n"
            )
