"""The training run's configuration and its serial mode: the whole loop in one process.

Serial mode wires the same parts as the distributed system — a :class:`~actors.sim_actor.SimActor`,
a :class:`~replay.table.ReplayTable`, a :class:`~learner.sac.SACLearner`, weights published as
safetensors versions — without Ray, gRPC or Redis, for debugging and fast tests. Each iteration
the actor steps its cells once; once the table holds ``min_replay`` steps, the learner makes
``updates_per_step`` updates on sampled transitions and every ``publish_every`` updates
publishes a new weights version, which the actor adopts at its next version check.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from actors.exploration import ExplorationConfig
from actors.sim_actor import SimActor
from graspfleet.actions.config import ActionConfig
from graspfleet.config import require
from graspfleet.sim.config import CellConfig
from graspfleet.spec import observation_spec
from learner.config import NetworkConfig, SACConfig
from learner.sac import SACLearner, batch_from_columns
from learner.weights import serialize
from replay.config import ShardConfig
from replay.signature import grasp_signature
from replay.table import DecodedChunk, ReplayTable


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run: what to simulate, how to learn, how long."""

    tier: str = "T0"
    cells: int = 8
    """Grasp cells per actor."""
    actors: int = 1
    env_steps: int = 200_000
    """Budget of environment steps (all cells of all actors)."""
    batch_size: int = 256
    updates_per_step: float = 0.25
    """Learner updates per actor step of all its cells (the update-to-data ratio times the cells)."""
    min_replay: int = 2_000
    """Steps in replay before learning starts."""
    publish_every: int = 50
    """Learner updates between weight publications."""
    version_check_every: int = 25
    """Actor steps between weight version checks."""
    checkpoint_every: int = 500
    """Learner updates between checkpoints of the learner's full state (distributed runs)."""
    chunk_length: int = 32
    seed: int = 0
    device: str = "auto"
    cell: CellConfig = CellConfig()
    action: ActionConfig = ActionConfig()
    network: NetworkConfig = NetworkConfig()
    sac: SACConfig = SACConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    replay: ShardConfig = ShardConfig(capacity=200_000, min_size_to_sample=1)

    def __post_init__(self) -> None:
        require(self.cells >= 1 and self.actors >= 1, "train.cells/actors: must be >= 1")
        require(self.env_steps >= 1, "train.env_steps: must be >= 1")
        require(self.batch_size >= 1, "train.batch_size: must be >= 1")
        require(self.updates_per_step >= 0, "train.updates_per_step: must be >= 0")
        require(self.min_replay >= 1, "train.min_replay: must be >= 1")
        require(self.publish_every >= 1, "train.publish_every: must be >= 1")
        require(self.chunk_length >= 1, "train.chunk_length: must be >= 1")
        require(self.checkpoint_every >= 1, "train.checkpoint_every: must be >= 1")


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


class TableSink:
    """One cell's trajectory sink that inserts chunks straight into an in-process table."""

    _writers = itertools.count()

    def __init__(self, table: ReplayTable, actor_id: str, chunk_length: int) -> None:
        self.table = table
        self.actor_id = actor_id
        self.writer_id = f"{actor_id}#{next(self._writers)}"
        self.chunk_length = chunk_length
        self.tier = 0
        self.policy_version = 0
        self._rows: list[dict[str, Any]] = []
        self._sequence = 0
        self._episode = 0
        self._offset = 0

    def _seal(self, end_of_episode: bool) -> None:
        self._sequence += 1
        columns = {
            c.name: np.stack([np.asarray(r[c.name], dtype=c.np_dtype) for r in self._rows])
            for c in self.table.signature.columns
        }
        self.table.insert(
            DecodedChunk(
                self.writer_id,
                self._sequence,
                self.actor_id,
                self._episode,
                self._offset,
                self.tier,
                self.policy_version,
                columns,
                None,
                end_of_episode,
            )
        )
        self._offset += len(self._rows)
        self._rows = []

    def append(self, step: dict[str, Any]) -> None:
        if len(self._rows) == self.chunk_length:
            self._seal(False)
        self._rows.append(step)

    def end_episode(self, final_observation: dict[str, Any]) -> None:
        final = {
            c.name: final_observation[c.name] if c.observation else np.zeros(c.shape, c.np_dtype)
            for c in self.table.signature.columns
        }
        self.append(final)
        self._seal(True)
        self._episode += 1
        self._offset = 0

    def flush(self, timeout: float | None = None) -> None:
        if self._rows:
            self._seal(False)

    def close(self, timeout: float | None = None) -> None:
        self.flush()


@dataclasses.dataclass
class TrainReport:
    env_steps: int
    updates: int
    weights_version: int
    seconds: float
    episodes: int
    successes: int
    metrics_path: Path | None


def train_serial(
    config: TrainConfig, run_dir: Path | None = None, on_progress: Callable[[dict[str, float]], None] | None = None
) -> TrainReport:
    """Run the training loop in this process until ``config.env_steps`` environment steps."""
    start = time.perf_counter()
    learner = SACLearner(observation_spec(config.cell), config.cell.gripper, config.network, config.sac, config.device)
    weights = InMemoryWeights()
    version = 0
    weights.publish(version, serialize(learner.policy_tensors(), version))
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
    metrics_path = None
    writer = None
    handle = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics_path = run_dir / "metrics.csv"
        handle = metrics_path.open("w", newline="")
    pending_updates = 0.0
    last: dict[str, float] = {}
    try:
        while sum(a.stats.env_steps for a in actors) < config.env_steps:
            for actor in actors:
                actor.step()
            if table.size < config.min_replay:
                continue
            pending_updates += config.updates_per_step * len(actors)
            while pending_updates >= 1:
                pending_updates -= 1
                sample = table.sample(config.batch_size)
                last = learner.update(batch_from_columns(sample.columns, learner.device, sample.weights))
                if learner.updates % config.publish_every == 0:
                    version += 1
                    weights.publish(version, serialize(learner.policy_tensors(), version))
                    row = _progress(actors, learner.updates, version, start, last)
                    if handle is not None:
                        if writer is None:
                            writer = csv.DictWriter(handle, fieldnames=list(row))
                            writer.writeheader()
                        writer.writerow(row)
                        handle.flush()
                    if on_progress is not None:
                        on_progress(row)
    finally:
        if handle is not None:
            handle.close()
        for actor in actors:
            actor.close()
    if run_dir is not None:
        (run_dir / "policy.safetensors").write_bytes(serialize(learner.policy_tensors(), version))
    return TrainReport(
        env_steps=sum(a.stats.env_steps for a in actors),
        updates=learner.updates,
        weights_version=version,
        seconds=time.perf_counter() - start,
        episodes=sum(a.stats.episodes for a in actors),
        successes=sum(a.stats.outcomes["success"] for a in actors),
        metrics_path=metrics_path,
    )


def _progress(
    actors: list[SimActor], updates: int, version: int, start: float, last: dict[str, float]
) -> dict[str, float]:
    episodes = sum(a.stats.episodes for a in actors)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "env_steps": sum(a.stats.env_steps for a in actors),
        "updates": updates,
        "weights_version": version,
        "episodes": episodes,
        "success_rate": sum(a.stats.outcomes["success"] for a in actors) / episodes if episodes else 0.0,
        "actor_weights_version": min(a.policy.version for a in actors),
        **{k: round(v, 5) for k, v in last.items()},
    }
