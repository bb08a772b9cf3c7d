"""The serial backend: the whole run in one process, for debugging and fast tests.

The same parts as the distributed backend — :class:`~actors.sim_actor.SimActor`\\ s, a
:class:`~replay.table.ReplayTable`, safetensors weights versions, evaluations — without Ray, gRPC
or Redis. Each collection steps every actor's cells once; once the table holds ``min_replay``
steps, every collection makes ``updates_per_step`` updates per actor (the update-to-data ratio the
distributed shards' rate limiters hold). Actors adopt a published version at their next version
check; evaluations run inline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from actors.sim_actor import SimActor
from actors.trajectory import grasp_signature
from graspfleet.config import ConfigError
from graspfleet.spec import observation_spec
from orchestrator.config import OperationsConfig, TrainConfig
from orchestrator.evaluations import EvaluationRequest, run_evaluation
from orchestrator.loop import Collected, TrainingLoop, TrainReport
from replay.local import TableSink
from replay.table import ReplayTable, SampleResult


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


class SerialBackend:
    """Cells, replay and weights in this process (:class:`orchestrator.loop.Backend`)."""

    name = "graspfleet train --serial"

    def __init__(self, config: TrainConfig) -> None:
        for field in OperationsConfig.RAY_ONLY:
            if getattr(config.operations, field) != getattr(OperationsConfig, field):
                raise ConfigError(
                    f"operations.{field}: applies to the Ray actors of a distributed run; a serial run has "
                    "none (leave it at its default, or train without --serial)"
                )
        self.config = config
        self.weights = InMemoryWeights()
        self.table = ReplayTable(grasp_signature(observation_spec(config.cell)), config.replay, seed=config.seed)
        self.actors = [
            SimActor(
                f"actor-{k}",
                config.cell,
                config.tier,
                config.actors.cells,
                sink_factory=lambda name: TableSink(self.table, name, config.actors.chunk_length),
                weights=self.weights,
                network=config.network,
                exploration=config.exploration,
                action=config.action,
                seed=config.seed + k,
                version_check_every=config.actors.version_check_every,
                interventions=config.interventions,
                expert=config.learning.expert,
            )
            for k in range(config.actors.count)
        ]
        self.stopped = False
        self.pending_updates = 0.0
        self.finished: list[tuple[EvaluationRequest, dict[str, float] | None]] = []
        self.counted = (0, 0, 0)
        """env steps, episodes, successes of all actors at the last collection"""

    def publish(self, version: int, blob: bytes, first: bool = False) -> None:
        self.weights.publish(version, blob)

    def set_tier(self, tier: str, generation: int, state: Mapping[str, Any]) -> None:
        for actor in self.actors:
            actor.set_tier(tier, generation)

    def set_state(self, **fields: str | int | float) -> None:
        """No operators' view of a serial run: its state is in the run directory."""

    def append_event(self, kind: str, fields: Mapping[str, str | int | float], curriculum: bool = False) -> None:
        """No event stream: the curriculum's decisions are in the run directory."""

    def collect(self) -> Collected:
        if self.stopped:
            return Collected(0, 0, 0, [])
        for actor in self.actors:
            actor.step()
        totals = (
            sum(a.stats.env_steps for a in self.actors),
            sum(a.stats.episodes for a in self.actors),
            sum(a.stats.policy_successes for a in self.actors),
        )
        (steps, episodes, successes), before = totals, self.counted
        self.counted = totals
        outcomes = [o for a in self.actors for o in a.take_outcomes()]
        return Collected(steps - before[0], episodes - before[1], successes - before[2], outcomes)

    def replay_ready(self, env_steps: int) -> bool:
        return self.table.size >= self.config.learning.min_replay

    def updates_due(self) -> int:
        self.pending_updates += self.config.learning.updates_per_step * len(self.actors)
        due = int(self.pending_updates)
        self.pending_updates -= due
        return due

    def sample(self, rows: int) -> SampleResult | None:
        return self.table.sample(rows, n_step=self.config.sac.n_step)

    def update_priorities(self, sample: SampleResult, priorities: np.ndarray) -> bool:
        self.table.update_priorities(sample.keys, priorities)
        return True

    def progress_fields(self) -> dict[str, float]:
        running = [a.policy.version for a in self.actors]
        return {"actor_weights_version": min(running), "actor_versions": len(set(running))}

    def submit(self, request: EvaluationRequest) -> None:
        fetched = self.weights.fetch_weights(request.weights_version)
        assert fetched is not None, "the loop evaluates published versions only"
        self.finished.append((request, run_evaluation(self.config, fetched[1], request)))

    def finished_evaluations(self) -> list[tuple[EvaluationRequest, dict[str, float] | None]]:
        done, self.finished = self.finished, []
        return done

    def pending_evaluations(self) -> int:
        return 0

    def stop_requested(self) -> bool:
        return False

    def stop_actors(self) -> None:
        """Close every actor (its cells' last chunks go to the table)."""
        if not self.stopped:
            for actor in self.actors:
                actor.close()
            self.stopped = True

    def actors_stopping(self) -> bool:
        return False

    def finish(self, report: TrainReport) -> None:
        report.replay_inserted_steps = self.table.inserted_steps
        report.replay_priority_updates = self.table.priority_updates


def train_serial(
    config: TrainConfig, run_dir: Path | None = None, on_progress: Callable[[dict[str, float]], None] | None = None
) -> TrainReport:
    """Train in this process until ``budget.env_steps`` environment steps (or ``budget.seconds``,
    or an evaluation reaching ``evaluation.target_success``)."""
    backend = SerialBackend(config)
    try:
        return TrainingLoop(config, backend, run_dir, on_progress=on_progress).run()
    finally:
        backend.stop_actors()  # also on Ctrl-C
