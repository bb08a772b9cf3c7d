"""The run's configuration: every setting of a training run, loadable from YAML and ``--set``.

One frozen dataclass per component (the cell, actions, networks, SAC, exploration, curriculum,
replay) under the run's own settings; the method's numbers are their defaults, named
(docs/method.md lists each with its key). A field means the same in the serial and the
distributed backend (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses

from actors.exploration import ExplorationConfig
from graspfleet.actions.config import ActionConfig
from graspfleet.config import require
from graspfleet.networks import NetworkConfig
from graspfleet.sim.config import CellConfig
from learner.config import SACConfig
from learner.curriculum import CurriculumConfig
from replay.config import ShardConfig


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
    mixes into its batches with a decaying behaviour-cloning term (0: none; see actors/demonstrations.py)."""
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
