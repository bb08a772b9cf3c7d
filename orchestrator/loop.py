"""The training loop: one loop for every run; a backend decides where its parts live.

:class:`TrainingLoop` owns the order of a run: collect the actors' steps and finished episodes
(feeding the curriculum's gate) → sample → update → new priorities → checkpoint → publish a
weights version and a progress row → ask for evaluations and validations → take their results
(best policy, rollbacks, ``evaluation.target_success``) → at the end, drain the actors, save and
plot.

A :class:`Backend` is where the cells, replay and weights live:

- :class:`orchestrator.serial.SerialBackend`: cells stepped in this process, an in-process replay
  table, weights kept in memory, evaluations run inline (no Ray, no network);
- :class:`orchestrator.distributed.DistributedBackend`: Ray actors, gRPC replay shards, the Redis
  control plane, an evaluation actor.

Every config field means the same in both; what a backend cannot do it refuses when it is built.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import numpy as np

from graspfleet.interfaces import EpisodeOutcome, WeightSource
from graspfleet.sim.batch import OUTCOMES
from graspfleet.sim.tiers import TIER_ORDER
from graspfleet.weights import serialize
from learner import checkpoint as learner_checkpoint
from learner.sac import SACLearner, batch_from_columns
from orchestrator.artifacts import BestPolicy, CsvLog, JsonLines, Progress, validation_row
from orchestrator.config import TrainConfig
from orchestrator.curriculum import CurriculumMetrics, RunCurriculum
from orchestrator.evaluations import EvaluationRequest, evaluation_row, validation_result
from orchestrator.learning import DemonstrationBatches, make_learner, new_priorities
from orchestrator.metrics import LearnerMetrics
from orchestrator.plots import plot_tier_history, plot_training_curves
from replay.table import SampleResult


class Collected(NamedTuple):
    """What the actors reported since the last collection."""

    env_steps: int
    episodes: int
    successes: int
    outcomes: list[EpisodeOutcome]


class Backend(Protocol):
    """Where a run's cells, replay and weights live (see the module docstring)."""

    name: str
    """How the run is titled in plots and messages (``graspfleet train``, ``… --serial``)."""

    @property
    def weights(self) -> WeightSource:
        """The published versions (the curriculum reads its KL references from here)."""

    def publish(self, version: int, blob: bytes, first: bool = False) -> None:
        """Make weights ``version`` available to every actor (``first``: before any actor runs)."""

    def set_tier(self, tier: str, generation: int, state: Mapping[str, Any]) -> None:
        """Move the actors to ``tier`` (curriculum ``generation``; ``state`` for a restarted learner)."""

    def set_state(self, **fields: str | int | float) -> None:
        """The run's status for operators (``graspfleet status``)."""

    def append_event(self, kind: str, fields: Mapping[str, str | int | float], curriculum: bool = False) -> None:
        """An event for operators (``curriculum``: a curriculum decision)."""

    def collect(self) -> Collected:
        """Let the actors run and return what they reported (the serial backend steps each cell
        once; the distributed one scales the fleet and takes the reports that have arrived)."""

    def replay_ready(self, env_steps: int) -> bool:
        """Whether replay holds enough to learn from (``min_replay``)."""

    def updates_due(self) -> int:
        """How many updates to make before collecting again (the update-to-data ratio)."""

    def sample(self, rows: int) -> SampleResult | None:
        """A batch of ``rows`` transitions, or None when replay has none to give now."""

    def update_priorities(self, sample: SampleResult, priorities: np.ndarray) -> bool:
        """Set the priorities of ``sample``'s items; False if they could not be set (counted)."""

    def progress_fields(self) -> dict[str, float]:
        """The actors' side of a progress row: ``actor_weights_version`` (the oldest version an
        actor runs) and ``actor_versions`` (how many versions actors have run)."""

    def submit(self, request: EvaluationRequest) -> None:
        """Start an evaluation or validation of a published version."""

    def finished_evaluations(self) -> list[tuple[EvaluationRequest, dict[str, float] | None]]:
        """The submitted requests that finished since the last call, with their results (None:
        it failed, e.g. its actor died; the next one is due on schedule)."""

    def pending_evaluations(self) -> int:
        """Submitted requests not finished yet."""

    def stop_requested(self) -> bool:
        """Whether an operator asked the run to stop (``graspfleet stop``)."""

    def stop_actors(self) -> None:
        """Begin the end: every actor flushes what it has to replay, then stops."""

    def actors_stopping(self) -> bool:
        """Whether actors are still flushing."""

    def finish(self, report: TrainReport) -> None:
        """The run ended: fill in what only the backend knows (replay's counts, weight sync)."""


@dataclasses.dataclass
class TrainReport:
    """What a run did."""

    env_steps: int
    """Environment steps the actors reported (all cells of all actors)."""
    updates: int
    weights_version: int
    seconds: float
    episodes: int
    successes: int
    metrics_path: Path | None
    demonstration_steps: int = 0
    """Control steps of the expert episodes the learner was given (not in ``env_steps``)."""
    evaluations: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """One row per evaluation (``evaluations.csv``)."""
    best_evaluation: dict[str, float] | None = None
    """The evaluation of the policy kept as ``best_policy.safetensors`` (None without evaluations)."""
    weight_sync_seconds: list[float] = dataclasses.field(default_factory=list)
    """Per fully adopted version: publication → every actor running it (distributed runs)."""
    replay_inserted_steps: int = 0
    """Steps replay inserted, read after every actor drained."""
    replay_priority_updates: int = 0
    """Prioritized replay: items whose priority the learner set (every replay row of every update)."""


class TrainingLoop:
    """One training run over ``backend`` until its budget (``budget.env_steps``, ``budget.seconds``),
    ``evaluation.target_success`` or an operator's stop; ``run_dir`` (optional for the serial
    backend) receives the artifacts (:mod:`orchestrator.artifacts`) and the learner's checkpoints,
    and a run started on a directory that holds a checkpoint resumes from it."""

    def __init__(
        self,
        config: TrainConfig,
        backend: Backend,
        run_dir: Path | None,
        metrics: LearnerMetrics | None = None,
        on_progress: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.run_dir = run_dir
        self.metrics = metrics or LearnerMetrics()
        self.on_progress = on_progress
        self.start = time.perf_counter()
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
        self.learner: SACLearner = make_learner(config)
        self.checkpoint_dir = None if run_dir is None else run_dir / "learner"
        self.resumed = (
            learner_checkpoint.restore(self.learner, self.checkpoint_dir)
            if self.checkpoint_dir is not None and learner_checkpoint.exists(self.checkpoint_dir)
            else -1
        )
        # version numbers continue after a resume, past anything the registry already holds
        self.version = max(backend.weights.latest_version(), self.resumed)
        self.env_steps = self.episodes = self.successes = 0
        self.interventions = 0
        """Training episodes the scripted expert took over (actors/intervention.py)."""
        self.last_update: dict[str, float] = {}
        self.last_published_at = time.perf_counter()
        self.validations_requested = self.validations_finished = 0
        self.progress = Progress(
            None if run_dir is None else run_dir / "metrics.csv", config.actors.success_window, self.start
        )
        self.evaluations = CsvLog(None if run_dir is None else run_dir / "evaluations.csv")
        self.best = BestPolicy(run_dir, resume=self.resumed >= 0, passing=config.curriculum.gate_success)
        if self.best.evaluation is not None:  # a resumed run's best so far
            self.metrics.show_best(self.best.evaluation)
        self.publish(first=True)  # the actors that load it have not started yet
        self.demonstrations = DemonstrationBatches(config, self.learner.device)
        self.curriculum = self._start_curriculum()
        if self.resumed >= 0:
            backend.append_event("learner_resumed", {"updates": self.learner.updates, "weights_version": self.version})

    # the run's parts -------------------------------------------------------------------------

    def _start_curriculum(self) -> RunCurriculum | None:
        config = self.config
        metrics = CurriculumMetrics(self.metrics.registry, config.curriculum.tiers)
        if not config.curriculum.enabled:
            metrics.tier.set(TIER_ORDER.index(config.tier))
            metrics.tier_info.labels(tier=config.tier).set(1)
            return None
        events_file = None if self.run_dir is None else JsonLines(self.run_dir / "curriculum_events.jsonl")

        def audit(kind: str, fields: Mapping[str, str | int | float]) -> None:
            self.backend.append_event(kind, fields, curriculum=True)
            if events_file is not None:
                events_file.append(kind, fields)

        def set_tier(tier: str, generation: int, state: Mapping[str, Any]) -> None:
            self.backend.set_tier(tier, generation, state)
            self.demonstrations.switch_tier(tier)

        curriculum = RunCurriculum(
            config.curriculum,
            config.tier,
            self.learner,
            self.backend.weights,
            self.publish,
            set_tier=set_tier,
            audit=audit,
            metrics=metrics,
            run_dir=self.run_dir,
        )
        saved = None
        if self.resumed >= 0 and self.checkpoint_dir is not None:
            saved = learner_checkpoint.saved_curriculum(self.checkpoint_dir)
        curriculum.start(saved, self.now())
        return curriculum

    @property
    def tier(self) -> str:
        return self.config.tier if self.curriculum is None else self.curriculum.tier

    def now(self) -> dict[str, float]:
        return {
            "seconds": time.perf_counter() - self.start,
            "env_steps": self.env_steps,
            "updates": self.learner.updates,
        }

    def publish(self, first: bool = False) -> int:
        """Publish the learner's policy as the next version; returns it."""
        self.version += 1
        self.backend.publish(self.version, serialize(self.learner.policy_tensors(), self.version), first=first)
        self.metrics.version.set(self.version)
        return self.version

    def checkpoint(self) -> None:
        if self.checkpoint_dir is not None:
            state = None if self.curriculum is None else self.curriculum.state()
            learner_checkpoint.save(self.learner, self.checkpoint_dir, self.version, state)

    # the loop --------------------------------------------------------------------------------

    def finished(self) -> bool:
        config = self.config
        target = config.evaluation.target_success
        return (
            self.env_steps >= config.budget.env_steps
            or (config.budget.seconds is not None and time.perf_counter() - self.start >= config.budget.seconds)
            or (
                target is not None
                and bool(self.evaluations.rows)
                and self.evaluations.rows[-1]["success_rate"] >= target
            )
            or self.backend.stop_requested()
        )

    def run(self) -> TrainReport:
        """Train until finished; the artifacts are written also when interrupted (Ctrl-C)."""
        backend = self.backend
        stopped = False
        try:
            backend.set_state(status="training", tier=self.tier)
            while not self.finished():
                self.account(backend.collect())
                self.take_evaluations()
                if not backend.replay_ready(self.env_steps):
                    continue
                for _ in range(backend.updates_due()):
                    if not self.learn_once():
                        break
            stopped = backend.stop_requested()
            self.drain()
            report = self.report()
            backend.finish(report)
            backend.set_state(status="stopped" if stopped else "finished")
            backend.append_event(
                "run_finished",
                {
                    "env_steps": self.env_steps,
                    "updates": self.learner.updates,
                    "weights_version": self.version,
                    "replay_inserted_steps": report.replay_inserted_steps,
                },
            )
            return report
        except KeyboardInterrupt:
            # keep what was learned; the same run directory resumes from here
            backend.set_state(status="interrupted")
            backend.append_event("interrupted", {"updates": self.learner.updates, "weights_version": self.version})
            raise
        finally:
            self.save()

    def account(self, collected: Collected) -> None:
        """Count the actors' steps and episodes (metrics too) and feed the curriculum's gate."""
        self.env_steps += collected.env_steps
        self.episodes += collected.episodes
        self.successes += collected.successes
        self.metrics.env_steps.inc(collected.env_steps)
        for outcome in collected.outcomes:
            self.metrics.episodes.labels(tier=outcome.tier).inc()
            if outcome.intervened:
                self.interventions += 1
                self.metrics.interventions.labels(tier=outcome.tier).inc()
            for name in OUTCOMES:
                if getattr(outcome, name):
                    self.metrics.outcomes.labels(tier=outcome.tier, outcome=name).inc()
        if self.curriculum is not None and collected.outcomes:  # most steps finish no episode
            self.curriculum.record_outcomes(collected.outcomes, self.now())

    def learn_once(self) -> bool:
        """One update on a sampled batch and what follows it; False if replay gave no batch."""
        config, learner, metrics = self.config, self.learner, self.metrics
        waited = time.perf_counter()
        sample = self.backend.sample(config.learning.batch_size - self.demonstrations.size)
        metrics.sample_wait.inc(time.perf_counter() - waited)
        if sample is None:
            return False
        batch = batch_from_columns(sample.columns, learner.device, sample.weights)
        metrics.intervention_rows_routed.inc(self.demonstrations.route(sample))
        self.last_update = learner.update(batch, self.demonstrations.sample())
        if config.replay.sampler == "prioritized" and not self.backend.update_priorities(
            sample, new_priorities(learner, config.replay)
        ):
            metrics.priority_update_failures.inc()  # the batch's items keep their priorities
        metrics.updates.inc()
        metrics.show_update(self.last_update)
        updates = learner.updates
        if updates % config.learning.checkpoint_every == 0:
            self.checkpoint()
        if updates % config.learning.publish_every == 0:
            self.publish_progress()
        if config.evaluation.every and updates % config.evaluation.every == 0:
            self.request("evaluation")
        curriculum = self.curriculum
        if curriculum is not None and not self.validation_pending() and curriculum.validation_due(updates):
            curriculum.validation_requested(updates)
            self.request("validation")
        return True

    def publish_progress(self) -> None:
        published_at = time.perf_counter()
        self.metrics.updates_per_second.set(
            self.config.learning.publish_every / (published_at - self.last_published_at)
        )
        self.last_published_at = published_at
        self.publish()
        self.backend.set_state(weights_version=self.version, updates=self.learner.updates, env_steps=self.env_steps)
        row = self.progress.append(
            self.env_steps,
            self.episodes,
            self.successes,
            self.learner.updates,
            self.version,
            self.last_update,
            **self.backend.progress_fields(),
            tier_index=TIER_ORDER.index(self.tier),
            interventions=self.interventions,
        )
        if self.on_progress is not None:
            self.on_progress(row)

    # evaluations -----------------------------------------------------------------------------

    def request(self, kind: Literal["evaluation", "validation"]) -> None:
        """Ask for an evaluation (or a validation) of the latest published version on the current tier."""
        generation = 0 if self.curriculum is None else self.curriculum.generation
        at = self.now()
        self.validations_requested += kind == "validation"
        self.backend.submit(
            EvaluationRequest(
                kind,
                self.version,
                self.tier,
                generation,
                at["seconds"],
                self.env_steps,
                self.learner.updates,
            )
        )

    def validation_pending(self) -> bool:
        """The curriculum validates one version at a time."""
        return self.validations_requested > self.validations_finished

    def take_evaluations(self) -> None:
        """Hand finished validations to the curriculum, record finished evaluations, and offer
        either's policy as the run's best."""
        for request, result in self.backend.finished_evaluations():
            if request.kind == "validation":
                self.validations_finished += 1
                if result is None or self.curriculum is None:
                    continue
                validation = validation_result(request, result)
                self.curriculum.record_validation(validation, self.now())
                self.offer_best(request, validation_row(validation, request.tier, request.updates))
            elif result is not None:
                row = evaluation_row(request, result)
                self.evaluations.append(row)
                self.offer_best(request, row)
                if self.on_progress is not None:
                    self.on_progress({f"eval_{k}": v for k, v in row.items()})

    def offer_best(self, request: EvaluationRequest, row: dict[str, float]) -> None:
        fetched = self.backend.weights.fetch_weights(request.weights_version)
        if fetched is None or not self.best.offer(fetched[1], row):
            return
        self.metrics.show_best(row)
        kept: dict[str, str | int | float] = {
            "best_tier": request.tier,
            "best_weights_version": request.weights_version,
            "best_success_rate": row["success_rate"],
        }
        self.backend.set_state(**kept)  # what `graspfleet status` shows
        self.backend.append_event("best_policy", {**kept, "updates": request.updates})

    # the end ---------------------------------------------------------------------------------

    def drain(self) -> None:
        """Every actor flushes what it streamed before it stops, and evaluations under way finish
        (the policy they evaluate may be the run's best), within ``operations.drain_timeout``."""
        self.backend.stop_actors()
        deadline = time.perf_counter() + self.config.operations.drain_timeout
        while (self.backend.actors_stopping() or self.backend.pending_evaluations()) and time.perf_counter() < deadline:
            self.account(self.backend.collect())
            self.take_evaluations()
            time.sleep(0.02)
        self.account(self.backend.collect())
        self.take_evaluations()

    def report(self) -> TrainReport:
        return TrainReport(
            env_steps=self.env_steps,
            updates=self.learner.updates,
            weights_version=self.version,
            seconds=time.perf_counter() - self.start,
            episodes=self.episodes,
            successes=self.successes,
            metrics_path=None if self.run_dir is None else self.run_dir / "metrics.csv",
            demonstration_steps=self.demonstrations.steps,
            evaluations=self.evaluations.rows,
            best_evaluation=self.best.evaluation,
        )

    def save(self) -> None:
        """The learner's checkpoint, the last policy, the closed logs and the plots."""
        self.checkpoint()
        self.progress.close()
        self.evaluations.close()
        if self.run_dir is not None:
            (self.run_dir / "policy.safetensors").write_bytes(serialize(self.learner.policy_tensors(), self.version))
            plot_training_curves(self.run_dir, f"{self.backend.name}: {self.config.tier}")
            plot_tier_history(self.run_dir, f"{self.backend.name}: curriculum")
