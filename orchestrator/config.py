"""The run's configuration: every setting of a training run, by concern, loadable from YAML and ``--set``.

A run config (:class:`TrainConfig`) is the tier and seed plus named sections, each a frozen
dataclass validated at construction: what ends the run (``budget``), the learner's schedule
(``learning``), the simulation actors (``actors``), evaluations (``evaluation``), how a distributed
run manages its processes (``operations``), and the components' own configs (``cell``, ``action``,
``network``, ``sac``, ``exploration``, ``curriculum``, ``replay``). The method's numbers are their
defaults, named (docs/method.md lists each with its key); the docstring under each field is what
``graspfleet config --keys`` and ``graspfleet train --help`` print. A field means the same in the
serial and the distributed backend, or a serial run refuses it (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from actors.exploration import ExplorationConfig
from actors.intervention import InterventionConfig
from graspfleet.actions.config import ActionConfig
from graspfleet.config import require
from graspfleet.networks import NetworkConfig
from graspfleet.policies import ExpertKind
from graspfleet.sim.config import CellConfig
from graspfleet.sim.tiers import get_tier
from learner.config import SACConfig
from learner.curriculum import CurriculumConfig
from replay.config import ShardConfig


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    """What ends a run: whichever budget is spent first (or an evaluation's ``target_success``, or
    an operator's stop)."""

    env_steps: int = 200_000
    """Environment steps of all cells of all actors."""
    seconds: float | None = None
    """Wall-clock seconds from the run's start (None: only the step budget counts)."""

    def __post_init__(self) -> None:
        require(self.env_steps >= 1, "env_steps: must be >= 1")
        require(self.seconds is None or self.seconds > 0, "seconds: must be > 0 or null")


@dataclasses.dataclass(frozen=True)
class LearningConfig:
    """The learner's schedule: its batches, the update-to-data ratio, weight publications,
    checkpoints, expert demonstrations, and where it runs."""

    batch_size: int = 256
    """Transitions per SAC update (demonstration rows included)."""
    updates_per_step: float = 0.5
    """Learner updates per actor step of all its cells (the update-to-data ratio times the cells)."""
    min_replay: int = 2_000
    """Steps in replay before learning starts."""
    publish_every: int = 50
    """Learner updates between weight publications."""
    checkpoint_every: int = 500
    """Learner updates between checkpoints of the learner's full state (networks, optimizers,
    counters), which a resumed run starts from."""
    demonstrations: int = 400
    """Successful scripted-expert episodes collected on the tier before training (and again on each
    tier a promotion or rollback enters), which the learner mixes into its batches with a decaying
    behaviour-cloning term (0: none; see actors/demonstrations.py). Collecting 400 takes 20–30 s;
    on T1 they generalize across the cube's positions and yaws where 100 do not
    (docs/experiments/2026-12-07-the-temperature-and-the-actor-rate.md)."""
    expert: ExpertKind = "reactive"
    """The scripted expert that demonstrates and intervenes (graspfleet/policies.py): ``reactive``,
    a function of the observation and the target's pose alone, which a policy can imitate, or
    ``waypoint``, a state machine on moving waypoints whose hold before lifting and waypoint the
    observation does not show."""
    device: str = "auto"
    """Torch device of the learner: ``cpu``, ``cuda``, ``cuda:N``, or ``auto`` (a GPU where one is
    visible, else the CPU). Actors always infer on the CPU."""
    threads: int = 0
    """Intra-op threads of the learner on the CPU. 0: where a distributed run starts its own Ray
    cluster on this machine, the cores its actors are left (cores − min(actors, cores // 2), at
    least 1: two intra-op threads on a 2-core machine stall whenever an actor takes a core, and
    starve the actors); joining a cluster (``--address``) and in ``--serial`` mode, every core."""

    def __post_init__(self) -> None:
        require(self.batch_size >= 1, "batch_size: must be >= 1")
        require(self.updates_per_step >= 0, "updates_per_step: must be >= 0")
        require(self.min_replay >= 1, "min_replay: must be >= 1")
        require(self.publish_every >= 1, "publish_every: must be >= 1")
        require(self.checkpoint_every >= 1, "checkpoint_every: must be >= 1")
        require(self.demonstrations >= 0, "demonstrations: must be >= 0")
        require(self.threads >= 0, "threads: must be >= 0 (0: automatic)")


@dataclasses.dataclass(frozen=True)
class ActorsConfig:
    """The simulation actors: how many, how wide, how often they look for new weights, and how
    their cells write trajectories to replay."""

    count: int = 1
    """Actors a fresh distributed run starts with (serial: actors stepped in turn in one process);
    ``graspfleet actors scale`` changes the count while it runs (a resumed run keeps the count the
    control plane holds)."""
    cells: int = 8
    """Grasp cells per actor, stepped as one batch (one inference per step for all of them)."""
    version_check_every: int = 25
    """Actor steps between weight version checks (a prefetched version is installed sooner)."""
    chunk_length: int = 32
    """Steps per replay chunk (the unit a writer sends and a shard accepts)."""
    writer_max_pending_chunks: int = 16
    """Chunks a cell's replay writer holds unsent before ``append`` waits: how far an actor may run
    ahead of its shard's rate limiter (16 × 32 steps ≈ 4 MiB per cell at the default observation)."""
    writer_max_retained_mb: float = 64.0
    """MiB of accepted chunks a cell's replay writer keeps, until its shard's next checkpoint holds
    them, to resend if the shard dies first: at ≈ 10–20 steps/s per cell and 60 s between
    checkpoints a cell retains ≈ 5–10 MiB; past this limit the oldest are released unprotected
    (counted). A shard that takes no checkpoints gets nothing retained."""
    success_window: int = 100
    """Training episodes (with exploration noise) whose success rate the progress rows and each
    actor's success gauge report."""

    def __post_init__(self) -> None:
        require(self.count >= 1, "count: must be >= 1")
        require(self.cells >= 1, "cells: must be >= 1")
        require(self.version_check_every >= 1, "version_check_every: must be >= 1")
        require(self.chunk_length >= 1, "chunk_length: must be >= 1")
        require(self.writer_max_pending_chunks >= 1, "writer_max_pending_chunks: must be >= 1")
        require(self.writer_max_retained_mb >= 0, "writer_max_retained_mb: must be >= 0")
        require(self.success_window >= 1, "success_window: must be >= 1")


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """Evaluations of the deterministic policy on fresh episodes of the current tier, which choose
    the run's best policy (``best_policy.safetensors``) and may end the run."""

    every: int = 0
    """Learner updates between evaluations (0: none; the curriculum's validations still run)."""
    episodes: int = 100
    """Episodes per evaluation."""
    target_success: float | None = None
    """Stop once an evaluation reaches this success rate (None: run the whole budget)."""

    def __post_init__(self) -> None:
        require(self.every >= 0, "every: must be >= 0")
        require(self.episodes >= 1, "episodes: must be >= 1")
        require(
            self.target_success is None or 0 < self.target_success <= 1, "target_success: must be in (0, 1] or null"
        )


@dataclasses.dataclass(frozen=True)
class OperationsConfig:
    """How a distributed run places, supervises and schedules its actor processes. All but
    ``drain_timeout`` apply to Ray actors only: a serial run refuses them set to anything but
    their defaults."""

    RAY_ONLY: ClassVar[tuple[str, ...]] = (
        "reconcile_seconds",
        "actor_failure_limit",
        "actor_failure_window",
        "actor_resource",
        "prefetch_niceness",
    )
    """The fields that only a distributed run's Ray actors have."""

    drain_timeout: float = 120.0
    """Seconds the actors (and evaluators) being stopped may take to flush their trajectories
    before they are killed anyway."""
    reconcile_seconds: float = 1.0
    """Seconds between the driver's reads of the desired actor count (it starts or drains actors)."""
    actor_failure_limit: int = 3
    """An actor whose ``run`` or constructor raises is restarted; this many failures of one actor
    within ``actor_failure_window`` stop the run with its error (a fault restarts do not cure)."""
    actor_failure_window: float = 600.0
    """Seconds over which an actor's failures count towards ``actor_failure_limit``."""
    actor_resource: str = ""
    """Custom Ray resource each actor requests one unit of (``sim_slot`` on the clusters of
    ``deploy/``, whose simulation workers declare it, so actor demand scales the workers); empty:
    actors request nothing and share the machine with the learner."""
    prefetch_niceness: int | None = 0
    """Niceness of each actor's weight prefetch thread, its own (Linux keeps niceness per thread):
    Ray runs actors at 15, where an announced version waits behind every actor's stepping thread
    on the core (see actors/weight_prefetch.py). Below the process's it needs CAP_SYS_NICE (root
    has it; a non-root user or a container as a rule does not, and the thread then keeps the
    process's). None: not changed."""

    def __post_init__(self) -> None:
        require(self.drain_timeout > 0, "drain_timeout: must be > 0 s")
        require(self.reconcile_seconds > 0, "reconcile_seconds: must be > 0 s")
        require(self.actor_failure_limit >= 1, "actor_failure_limit: must be >= 1")
        require(self.actor_failure_window > 0, "actor_failure_window: must be > 0 s")
        require(
            self.prefetch_niceness is None or -20 <= self.prefetch_niceness <= 19,
            "prefetch_niceness: must be in [-20, 19] or null",
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: the tier it starts on, its seed, and its settings by concern."""

    MOVED_KEYS: ClassVar[dict[str, str]] = {
        "env_steps": "budget.env_steps",
        "time_budget": "budget.seconds",
        "batch_size": "learning.batch_size",
        "updates_per_step": "learning.updates_per_step",
        "min_replay": "learning.min_replay",
        "publish_every": "learning.publish_every",
        "checkpoint_every": "learning.checkpoint_every",
        "demonstrations": "learning.demonstrations",
        "device": "learning.device",
        "learner_threads": "learning.threads",
        "actors": "actors.count",
        "cells": "actors.cells",
        "version_check_every": "actors.version_check_every",
        "chunk_length": "actors.chunk_length",
        "writer_max_pending_chunks": "actors.writer_max_pending_chunks",
        "writer_max_retained_mb": "actors.writer_max_retained_mb",
        "success_window": "actors.success_window",
        "evaluate_every": "evaluation.every",
        "evaluate_episodes": "evaluation.episodes",
        "target_success": "evaluation.target_success",
        "drain_timeout": "operations.drain_timeout",
        "reconcile_seconds": "operations.reconcile_seconds",
        "actor_failure_limit": "operations.actor_failure_limit",
        "actor_failure_window": "operations.actor_failure_window",
        "actor_resource": "operations.actor_resource",
        "prefetch_niceness": "operations.prefetch_niceness",
    }
    """Keys of the flat run config before it was split by concern → their path now; a config
    that still uses one is refused with its new path (:func:`graspfleet.config.from_mapping`)."""

    tier: str = "T0"
    """Difficulty tier the run starts on (T0 … T4; the curriculum moves it, ``graspfleet tiers``)."""
    seed: int = 0
    """Seed of the run: actor k's cells take ``seed + k``; evaluations and demonstrations derive theirs."""
    budget: BudgetConfig = BudgetConfig()
    learning: LearningConfig = LearningConfig()
    actors: ActorsConfig = ActorsConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    operations: OperationsConfig = OperationsConfig()
    cell: CellConfig = CellConfig()
    action: ActionConfig = ActionConfig()
    network: NetworkConfig = NetworkConfig()
    sac: SACConfig = SACConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    interventions: InterventionConfig = InterventionConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    replay: ShardConfig = ShardConfig(capacity=200_000, min_size_to_sample=1)

    def __post_init__(self) -> None:
        get_tier(self.tier)  # an unknown tier is refused with the known ones


SECTIONS = tuple(field.name for field in dataclasses.fields(TrainConfig) if field.name not in ("tier", "seed"))
"""The run config's sections, in the order ``graspfleet config`` prints them."""
RUN_SECTIONS = ("budget", "learning", "actors", "evaluation", "operations")
"""The sections of the run itself; the others are the components' own configs."""


def demonstration_rows(config: TrainConfig) -> int:
    """Rows of each learner batch drawn from the expert demonstrations; the rest,
    ``batch_size - demonstration_rows``, come from replay."""
    learning = config.learning
    return round(learning.batch_size * config.sac.demo_fraction) if learning.demonstrations > 0 else 0
