"""What one Ray actor process runs: a :class:`SimActor` fed by Redis weights and gRPC replay writers.

The class is plain; :func:`graspfleet.distributed.train_distributed` makes it remote. It is
built from plain data (a config mapping, addresses, names), so nothing but Ray's own actor
bookkeeping is pickled; trajectories travel over gRPC and weights as safetensors through Redis.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch

from actors.sim_actor import SimActor
from graspfleet.config import from_mapping
from graspfleet.control_plane import ControlPlane
from graspfleet.training import TrainConfig
from replay.client import ReplayWriter


class ActorWorker:
    """A SimActor plus its control-plane connection; ``run(steps)`` returns what happened."""

    def __init__(
        self, actor_id: str, config: dict[str, Any], redis_url: str, run: str, shards: list[str], seed: int
    ) -> None:
        train = from_mapping(TrainConfig, config)
        # many actors share a node's cores with the learner: one thread each for batched inference
        torch.set_num_threads(1)
        self.plane = ControlPlane(redis_url, run)
        self.actor = SimActor(
            actor_id,
            train.cell,
            train.tier,
            train.cells,
            sink_factory=lambda name: ReplayWriter(shards, name, chunk_length=train.chunk_length),
            weights=self.plane,
            network=train.network,
            exploration=train.exploration,
            action=train.action,
            seed=seed,
            version_check_every=train.version_check_every,
            announcements=self.plane.weight_notifications(),
            tiers=self.plane if train.curriculum.enabled else None,
        )

    def run(self, steps: int) -> dict[str, Any]:
        """Step the cells ``steps`` times; returns this call's counts, the weights version in use,
        the (version, unix time) of each weights load since the last call, and the outcome of each
        episode finished (``EpisodeOutcome`` fields, as plain tuples)."""
        before = self.actor.stats
        env, episodes, successes = before.env_steps, before.episodes, before.outcomes["success"]
        self.actor.adoptions.clear()
        for _ in range(steps):
            self.actor.step()
        stats = self.actor.stats
        return {
            "env_steps": stats.env_steps - env,
            "episodes": stats.episodes - episodes,
            "successes": stats.outcomes["success"] - successes,
            "weights_version": self.actor.policy.version,
            "adoptions": self.actor.adoptions[:],
            "outcomes": [dataclasses.astuple(o) for o in self.actor.take_outcomes()],
            "pid": os.getpid(),
        }

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.actor.close()
