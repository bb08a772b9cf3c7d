"""The training run's configuration and its serial mode: the whole loop in one process.

Serial mode wires the same parts as the distributed system — a :class:`~actors.sim_actor.SimActor`,
a :class:`~replay.table.ReplayTable`, a :class:`~learner.sac.SACLearner`, weights published as
safetensors versions — without Ray, gRPC or Redis, for debugging and fast tests. Each iteration
the actor steps its cells once; once the table holds ``min_replay`` steps, the learner makes
``updates_per_step`` updates on sampled transitions and every ``publish_every`` updates
publishes a new weights version, which the actor adopts at its next version check.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actors.exploration import ExplorationConfig
from actors.sim_actor import SimActor
from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.config import ActionConfig
from graspfleet.config import require
from graspfleet.curriculum import RunCurriculum
from graspfleet.evaluation import evaluate
from graspfleet.plots import plot_tier_history, plot_training_curves
from graspfleet.sim.config import CellConfig
from graspfleet.sim.tiers import TIER_ORDER, get_tier
from graspfleet.spec import observation_spec
from learner.config import NetworkConfig, SACConfig
from learner.curriculum import CurriculumConfig, ValidationResult
from learner.demonstrations import collect_demonstrations
from learner.sac import Batch, SACLearner, batch_from_columns
from learner.weights import serialize
from replay.config import ShardConfig
from replay.local import TableSink
from replay.signature import grasp_signature
from replay.table import ReplayTable


def new_priorities(learner: SACLearner, replay: ShardConfig) -> np.ndarray:
    """Priorities of the last update's replay rows: |TD error| + ``replay.priority_epsilon``."""
    return learner.last_td_errors.cpu().numpy().astype(np.float64) + replay.priority_epsilon


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: what to simulate, how to learn, how long."""

    tier: str = "T0"
    cells: int = 8
    """Grasp cells per actor."""
    actors: int = 1
    """Simulation actors a fresh distributed run starts with; ``graspfleet actors scale`` changes
    the count while it runs (a resumed run keeps the count the control plane holds)."""
    reconcile_seconds: float = 1.0
    """How often the driver reads the desired actor count and starts or drains actors."""
    drain_timeout: float = 120.0
    """Seconds a draining actor may take to flush its trajectories before it is killed anyway."""
    actor_failure_limit: int = 3
    """An actor whose ``run`` or constructor raises is restarted; this many failures of one actor
    within ``actor_failure_window`` stop the run with its error (a fault restarts do not cure)."""
    actor_failure_window: float = 600.0
    """Seconds over which an actor's failures count towards ``actor_failure_limit``."""
    actor_resource: str = ""
    """Custom Ray resource each actor requests one unit of (``sim_slot`` on the clusters of
    ``deploy/``, whose simulation workers declare it, so actor demand scales the workers); empty:
    actors request nothing and share the machine with the learner."""
    env_steps: int = 200_000
    """Budget of environment steps (all cells of all actors)."""
    time_budget: float | None = None
    """Wall-clock budget in seconds (None: only the step budget counts)."""
    batch_size: int = 256
    updates_per_step: float = 0.5
    """Learner updates per actor step of all its cells (the update-to-data ratio times the cells)."""
    min_replay: int = 2_000
    """Steps in replay before learning starts."""
    publish_every: int = 50
    """Learner updates between weight publications."""
    version_check_every: int = 25
    """Actor steps between weight version checks."""
    prefetch_niceness: int | None = 0
    """Niceness of each actor's weight prefetch thread, its own (Linux keeps niceness per thread):
    Ray runs actors at 15, where an announced version waited behind every actor's stepping thread
    on the core (see actors/weight_prefetch.py). Below the process's it needs CAP_SYS_NICE (root
    has it; a non-root user or a container as a rule does not, and the thread then keeps the
    process's). None: not changed."""
    checkpoint_every: int = 500
    """Learner updates between checkpoints of the learner's full state (distributed runs)."""
    chunk_length: int = 32
    """Steps per replay chunk (the unit a writer sends and a shard accepts)."""
    writer_max_pending_chunks: int = 16
    """Chunks a cell's replay writer holds unsent before ``append`` waits: how far an actor may run
    ahead of its shard's rate limiter (16 × 32 steps ≈ 4 MiB per cell at the default observation)."""
    writer_max_retained_mb: float = 64.0
    """Accepted chunks a cell's replay writer keeps, until its shard's next checkpoint holds them,
    to resend if the shard dies first: at the default ≈ 10–20 steps/s per cell and 60 s between
    checkpoints a cell retains ≈ 5–10 MiB; past this limit the oldest are released unprotected
    (counted). A shard that takes no checkpoints gets nothing retained."""
    demonstrations: int = 100
    """Successful scripted-expert episodes collected on the tier before training, which the learner
    mixes into its batches with a decaying behaviour-cloning term (0: none; see learner/demonstrations.py)."""
    success_window: int = 100
    """Training episodes (all actors, with exploration noise) the progress rows' success rate covers."""
    evaluate_every: int = 0
    """Learner updates between evaluations of the deterministic policy (0: never)."""
    evaluate_episodes: int = 100
    target_success: float | None = None
    """Stop once an evaluation reaches this success rate (None: run the whole budget)."""
    seed: int = 0
    device: str = "auto"
    learner_threads: int = 0
    """Intra-op threads of the learner on the CPU. 0: where a distributed run starts its own Ray
    cluster on this machine, the cores its actors are left (cores − min(actors, cores // 2), at
    least 1: two intra-op threads on a 2-core machine stall whenever an actor takes a core, and
    starve the actors); joining a cluster (``--address``) and in ``--serial`` mode, every core."""
    cell: CellConfig = CellConfig()
    action: ActionConfig = ActionConfig()
    network: NetworkConfig = NetworkConfig()
    sac: SACConfig = SACConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    replay: ShardConfig = ShardConfig(capacity=200_000, min_size_to_sample=1)

    def __post_init__(self) -> None:
        require(self.cells >= 1 and self.actors >= 1, "train.cells/actors: must be >= 1")
        require(self.env_steps >= 1, "train.env_steps: must be >= 1")
        require(self.actor_failure_limit >= 1, "train.actor_failure_limit: must be >= 1")
        require(self.actor_failure_window > 0, "train.actor_failure_window: must be > 0 s")
        require(self.time_budget is None or self.time_budget > 0, "train.time_budget: must be > 0 s or null")
        require(self.batch_size >= 1, "train.batch_size: must be >= 1")
        require(self.updates_per_step >= 0, "train.updates_per_step: must be >= 0")
        require(self.min_replay >= 1, "train.min_replay: must be >= 1")
        require(self.publish_every >= 1, "train.publish_every: must be >= 1")
        require(self.chunk_length >= 1, "train.chunk_length: must be >= 1")
        require(self.writer_max_pending_chunks >= 1, "train.writer_max_pending_chunks: must be >= 1")
        require(self.writer_max_retained_mb >= 0, "train.writer_max_retained_mb: must be >= 0")
        require(self.learner_threads >= 0, "train.learner_threads: must be >= 0 (0: automatic)")
        require(
            self.prefetch_niceness is None or -20 <= self.prefetch_niceness <= 19,
            "train.prefetch_niceness: must be in [-20, 19] or null",
        )
        require(self.checkpoint_every >= 1, "train.checkpoint_every: must be >= 1")
        require(self.demonstrations >= 0, "train.demonstrations: must be >= 0")
        require(self.success_window >= 1, "train.success_window: must be >= 1")
        require(self.evaluate_every >= 0, "train.evaluate_every: must be >= 0")
        require(self.evaluate_episodes >= 1, "train.evaluate_episodes: must be >= 1")
        require(
            self.target_success is None or 0 < self.target_success <= 1,
            "train.target_success: must be in (0, 1] or null",
        )


def demonstration_rows(config: TrainConfig) -> int:
    """Rows of each learner batch drawn from the expert demonstrations; the rest,
    ``batch_size - demonstration_rows``, come from replay."""
    return round(config.batch_size * config.sac.demo_fraction) if config.demonstrations > 0 else 0


class InMemoryWeights:
    """Published weights kept in this process (the serial stand-in for the control plane)."""

    def __init__(self) -> None:
        self.versions: dict[int, bytes] = {}

    def publish(self, version: int, blob: bytes) -> None:
        if self.versions and version <= max(self.versions):
            raise ValueError(f"weights: version {version} is not newer than {max(self.versions)}")
        self.versions[version] = blob

    def latest_version(self) -> int:
        return max(self.versions, default=-1)

    def fetch_weights(self, version: int | None = None) -> tuple[int, bytes] | None:
        v = self.latest_version() if version is None else version
        return (v, self.versions[v]) if v in self.versions else None


@dataclasses.dataclass
class TrainReport:
    env_steps: int
    updates: int
    weights_version: int
    seconds: float
    episodes: int
    successes: int
    metrics_path: Path | None
    demonstration_steps: int = 0
    """Control steps of the expert episodes the learner was given (not in ``env_steps``)."""
    evaluations: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """One row per evaluation: seconds, env_steps, updates, weights_version, success_rate, ci_low, ci_high."""
    best_evaluation: dict[str, float] | None = None
    """The evaluation of the policy kept as ``best_policy.safetensors`` (None without evaluations)."""
    weight_sync_seconds: list[float] = dataclasses.field(default_factory=list)
    """Distributed runs: per fully adopted version, publication → every actor running it."""
    replay_inserted_steps: int = 0
    """Distributed runs: steps the replay shards inserted, read after every actor drained."""
    replay_priority_updates: int = 0
    """Prioritized replay: items whose priority the learner set (every replay row of every update)."""


def make_learner(config: TrainConfig, device: str | None = None) -> SACLearner:
    """The learner a run of ``config`` trains (on ``device``, default the config's)."""
    return SACLearner(
        observation_spec(config.cell),
        cartesian_action_bounds(config.cell, config.action),
        config.network,
        config.sac,
        config.device if device is None else device,
    )


class DemonstrationBatches:
    """The learner's share of expert transitions per batch (none when no demonstrations are loaded),
    from the scripted expert's successful episodes on the tier the actors are on: a tier change
    replaces them (:meth:`switch_tier`), so imitation never pulls towards an easier tier's grasps."""

    def __init__(self, config: TrainConfig, device: torch.device, tier: str | None = None) -> None:
        self.config = config
        self.device = device
        self.steps = 0
        """Control steps of all the expert episodes collected so far, every tier included."""
        self.tier: str | None = None
        self.table: ReplayTable | None = None
        self.size = demonstration_rows(config)
        self.switch_tier(tier or config.tier)

    def switch_tier(self, tier: str) -> None:
        """Collect ``demonstrations`` expert episodes on ``tier`` in place of the current ones."""
        if self.size == 0 or tier == self.tier:
            return
        demos = collect_demonstrations(
            self.config.cell,
            get_tier(tier),
            self.config.action,
            self.config.demonstrations,
            seed=self.config.seed + 10_000 + TIER_ORDER.index(tier),
            chunk_length=self.config.chunk_length,
        )
        self.tier, self.table = tier, demos.table
        self.steps += demos.env_steps

    def sample(self) -> Batch | None:
        if self.table is None or self.size == 0:
            return None
        sample = self.table.sample(self.size, n_step=self.config.sac.n_step)
        return batch_from_columns(sample.columns, self.device)


def evaluation_row(
    config: TrainConfig,
    blob: bytes,
    start: float,
    env_steps: int,
    updates: int,
    version: int,
    tier: str,
) -> dict[str, float]:
    """Evaluate the published weights ``blob`` on ``tier`` over ``evaluate_episodes``; one row of
    ``evaluations.csv``."""
    result = evaluate(
        blob,
        config.cell,
        get_tier(tier),
        config.evaluate_episodes,
        seed=config.seed + 20_000,
        network=config.network,
        action=config.action,
    )
    return {
        "tier_index": TIER_ORDER.index(tier),
        "seconds": round(time.perf_counter() - start, 2),
        "env_steps": env_steps,
        "updates": updates,
        "weights_version": version,
        "success_rate": result.success_rate,
        "ci_low": round(result.interval[0], 4),
        "ci_high": round(result.interval[1], 4),
        "mean_return": round(result.mean_return, 3),
        **{f"{name}_rate": count / result.episodes for name, count in result.outcomes.items() if name != "success"},
        "timeout_rate": result.timeouts / result.episodes,
    }


class CsvLog:
    """Rows appended to a CSV file as they come (flushed each time, so a live run can be read and
    a killed one keeps its history; a resumed run appends under the existing header); without a
    path only kept in memory."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rows: list[dict[str, float]] = []
        self._writer: csv.DictWriter[str] | None = None
        self._handle: Any = None

    def append(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.path is None:
            return
        if self._writer is None:
            existing = self.path.is_file() and self.path.stat().st_size > 0
            fields = self.path.open().readline().strip().split(",") if existing else list(row)
            self._handle = self.path.open("a", newline="")
            self._writer = csv.DictWriter(self._handle, fieldnames=fields, extrasaction="ignore")
            if not existing:
                self._writer.writeheader()
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class Progress:
    """The run's progress rows (``metrics.csv``): counts so far, the actors' success rate over
    about the last ``window`` episodes, and the learner's latest update metrics; one builder for
    the serial and the distributed loop."""

    def __init__(self, path: Path | None, window: int, start: float) -> None:
        self.log = CsvLog(path)
        self.window = window
        self.start = start
        self._recent: collections.deque[tuple[int, int]] = collections.deque()
        self._counted = (0, 0)

    @property
    def rows(self) -> list[dict[str, float]]:
        return self.log.rows

    def recent_success_rate(self, episodes: int, successes: int) -> float:
        """Fold in the totals so far; the success rate of the latest ``window`` episodes (whole
        reports: a report that straddles the window's edge counts in full)."""
        new = (episodes - self._counted[0], successes - self._counted[1])
        self._counted = (episodes, successes)
        if new[0] > 0:
            self._recent.append(new)
        while len(self._recent) > 1 and sum(e for e, _ in self._recent) - self._recent[0][0] >= self.window:
            self._recent.popleft()
        seen = sum(e for e, _ in self._recent)
        return sum(s for _, s in self._recent) / seen if seen else 0.0

    def append(
        self,
        env_steps: int,
        episodes: int,
        successes: int,
        updates: int,
        version: int,
        learner_metrics: dict[str, float],
        **extra: float,
    ) -> dict[str, float]:
        row = {
            "seconds": round(time.perf_counter() - self.start, 2),
            "env_steps": env_steps,
            "updates": updates,
            "weights_version": version,
            "episodes": episodes,
            "success_rate": self.recent_success_rate(episodes, successes),
            **extra,
            **{k: round(v, 5) for k, v in learner_metrics.items()},
        }
        self.log.append(row)
        return row

    def close(self) -> None:
        self.log.close()


class BestPolicy:
    """The best-evaluated policy of a run, kept next to the latest one.

    SAC's deterministic policy does not improve monotonically (on T0 successive evaluations
    swing by 10–30 points, README), so the policy to deploy is the best one an evaluation or a
    curriculum validation saw, not whatever the last update left. Best means the highest tier,
    then the highest success rate; a tie keeps the earlier policy. With a run directory the
    policy goes to ``best_policy.safetensors`` (weights with their version) and its evaluation
    row to ``best_policy.json``, both replaced atomically; ``resume`` starts from the best a
    previous run on the directory kept.
    """

    def __init__(self, run_dir: Path | None, resume: bool = False) -> None:
        self.run_dir = run_dir
        self.evaluation: dict[str, float] | None = None
        if resume and run_dir is not None and (run_dir / "best_policy.json").is_file():
            self.evaluation = json.loads((run_dir / "best_policy.json").read_text())

    def offer(self, blob: bytes, evaluation: Mapping[str, float]) -> bool:
        """Keep ``blob`` if its evaluation beats the best so far; returns whether it did."""
        if self.evaluation is not None and (evaluation["tier_index"], evaluation["success_rate"]) <= (
            self.evaluation["tier_index"],
            self.evaluation["success_rate"],
        ):
            return False
        self.evaluation = dict(evaluation)
        if self.run_dir is not None:
            for name, data in (
                ("best_policy.safetensors", blob),
                ("best_policy.json", json.dumps(self.evaluation, indent=2).encode()),
            ):
                staging = self.run_dir / f".{name}.writing"
                staging.write_bytes(data)
                staging.replace(self.run_dir / name)
        return True


class JsonLines:
    """Records appended to a JSON-lines file (the run directory's audit trail)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, kind: str, fields: Mapping[str, str | int | float]) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **fields}) + "\n")


def validation_row(result: ValidationResult, tier: str, updates: int) -> dict[str, float]:
    """A curriculum validation of the policy after ``updates`` updates, as :class:`BestPolicy` rows it."""
    return {
        "tier_index": TIER_ORDER.index(tier),
        "updates": updates,
        "weights_version": result.weights_version,
        "success_rate": result.success_rate,
        "collision_rate": result.collision_rate,
        "episodes": result.episodes,
    }


def validate(config: TrainConfig, blob: bytes, tier: str, generation: int, version: int) -> ValidationResult:
    """The curriculum's validation: the deterministic policy in ``blob`` (weights ``version``) on
    ``tier`` for ``curriculum.validation_episodes`` episodes; serial runs call it in process,
    distributed runs in an evaluation actor."""
    result = evaluate(
        blob,
        config.cell,
        get_tier(tier),
        config.curriculum.validation_episodes,
        seed=config.seed + 30_000 + version,
        network=config.network,
        action=config.action,
    )
    collisions = result.outcomes["collision"] / result.episodes
    return ValidationResult(generation, result.episodes, result.success_rate, collisions, version)


def train_serial(
    config: TrainConfig, run_dir: Path | None = None, on_progress: Callable[[dict[str, float]], None] | None = None
) -> TrainReport:
    """Run the training loop in this process until ``config.env_steps`` environment steps (or
    until an evaluation reaches ``config.target_success``)."""
    start = time.perf_counter()
    learner = make_learner(config)
    demonstrations = DemonstrationBatches(config, learner.device)
    weights = InMemoryWeights()
    version = 0
    weights.publish(version, serialize(learner.policy_tensors(), version))

    def publish() -> int:
        nonlocal version
        version += 1
        weights.publish(version, serialize(learner.policy_tensors(), version))
        return version

    table = ReplayTable(grasp_signature(observation_spec(config.cell)), config.replay, seed=config.seed)
    actors = [
        SimActor(
            f"actor-{k}",
            config.cell,
            config.tier,
            config.cells,
            sink_factory=lambda name: TableSink(table, name, config.chunk_length),
            weights=weights,
            network=config.network,
            exploration=config.exploration,
            action=config.action,
            seed=config.seed + k,
            version_check_every=config.version_check_every,
        )
        for k in range(config.actors)
    ]
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    progress = Progress(None if run_dir is None else run_dir / "metrics.csv", config.success_window, start)
    evaluations = CsvLog(None if run_dir is None else run_dir / "evaluations.csv")
    best = BestPolicy(run_dir)
    pending_updates = 0.0
    last: dict[str, float] = {}

    def env_steps() -> int:
        return sum(a.stats.env_steps for a in actors)

    def now() -> dict[str, float]:
        return {"seconds": time.perf_counter() - start, "env_steps": env_steps(), "updates": learner.updates}

    def switch_tier(tier: str, generation: int, _: Mapping[str, Any]) -> None:
        for actor in actors:
            actor.set_tier(tier, generation)
        demonstrations.switch_tier(tier)

    curriculum = None
    if config.curriculum.enabled:
        curriculum = RunCurriculum(
            config.curriculum,
            config.tier,
            learner,
            weights,
            publish,
            set_tier=switch_tier,
            audit=None if run_dir is None else JsonLines(run_dir / "curriculum_events.jsonl").append,
            run_dir=run_dir,
        )
        curriculum.start(None, now())

    def finished() -> bool:
        return (
            env_steps() >= config.env_steps
            or (config.time_budget is not None and time.perf_counter() - start >= config.time_budget)
            or (
                config.target_success is not None
                and bool(evaluations.rows)
                and evaluations.rows[-1]["success_rate"] >= config.target_success
            )
        )

    try:
        while not finished():
            for actor in actors:
                actor.step()
            outcomes = [o for a in actors for o in a.take_outcomes()]
            if curriculum is not None and outcomes:  # most steps finish no episode
                curriculum.record_outcomes(outcomes, now())
            if table.size < config.min_replay:
                continue
            pending_updates += config.updates_per_step * len(actors)
            while pending_updates >= 1:
                pending_updates -= 1
                sample = table.sample(config.batch_size - demonstrations.size, n_step=config.sac.n_step)
                batch = batch_from_columns(sample.columns, learner.device, sample.weights)
                last = learner.update(batch, demonstrations.sample())
                if config.replay.sampler == "prioritized":
                    table.update_priorities(sample.keys, new_priorities(learner, config.replay))
                if learner.updates % config.publish_every == 0:
                    publish()
                    row = progress.append(
                        env_steps(),
                        sum(a.stats.episodes for a in actors),
                        sum(a.stats.outcomes["success"] for a in actors),
                        learner.updates,
                        version,
                        last,
                        actor_weights_version=min(a.policy.version for a in actors),
                    )
                    if on_progress is not None:
                        on_progress(row)
                if config.evaluate_every and learner.updates % config.evaluate_every == 0:
                    blob = serialize(learner.policy_tensors(), version)
                    tier = config.tier if curriculum is None else curriculum.tier
                    evaluations.append(evaluation_row(config, blob, start, env_steps(), learner.updates, version, tier))
                    best.offer(blob, evaluations.rows[-1])
                    if on_progress is not None:
                        on_progress({f"eval_{k}": v for k, v in evaluations.rows[-1].items()})
                if curriculum is not None and curriculum.validation_due(learner.updates):
                    curriculum.validation_requested(learner.updates)
                    blob = weights.versions[version]
                    tier = curriculum.tier
                    result = validate(config, blob, tier, curriculum.generation, version)
                    curriculum.record_validation(result, now())
                    best.offer(blob, validation_row(result, tier, learner.updates))
    finally:
        # also on Ctrl-C: what was learned so far is written out
        for actor in actors:
            actor.close()
        progress.close()
        evaluations.close()
        if run_dir is not None:
            (run_dir / "policy.safetensors").write_bytes(serialize(learner.policy_tensors(), version))
            plot_training_curves(run_dir, f"graspfleet train --serial: {config.tier}")
            plot_tier_history(run_dir, "graspfleet train --serial: curriculum")
    return TrainReport(
        env_steps=env_steps(),
        updates=learner.updates,
        weights_version=version,
        seconds=time.perf_counter() - start,
        episodes=sum(a.stats.episodes for a in actors),
        successes=sum(a.stats.outcomes["success"] for a in actors),
        metrics_path=None if run_dir is None else run_dir / "metrics.csv",
        demonstration_steps=demonstrations.steps,
        evaluations=evaluations.rows,
        best_evaluation=best.evaluation,
        replay_priority_updates=table.priority_updates,
    )
