"""The simulation actor with real parts: grasp cells, a gRPC replay shard, redis-server weights."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from actors.exploration import ChannelNoise, ExplorationConfig, entropy_scale
from actors.sim_actor import SimActor
from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.config import ActionConfig
from graspfleet.control_plane import ControlPlane
from graspfleet.redis_server import RedisServer
from graspfleet.sim.config import CellConfig
from graspfleet.spec import observation_spec
from learner.sac import OBSERVATION_KEYS, SACLearner
from learner.weights import serialize
from replay.client import ReplaySampler, ReplayWriter
from replay.config import ShardConfig
from replay.server import ShardThread
from replay.signature import grasp_signature

CELL = CellConfig()


def test_exploration_noise_channels() -> None:
    config = ExplorationConfig()
    noise = ChannelNoise(2000, config, seed=0)
    samples = np.stack([noise.sample(1.0) for _ in range(200)])
    force = samples[:, :, 7]
    assert np.abs(force).max() <= config.truncation * config.force_sigma
    # OU: successive position noise is strongly correlated; force noise is not
    x = samples[:-1, :, 0].ravel()
    y = samples[1:, :, 0].ravel()
    assert np.corrcoef(x, y)[0, 1] > 0.8
    assert abs(np.corrcoef(force[:-1].ravel(), force[1:].ravel())[0, 1]) < 0.05
    assert entropy_scale(5.0, config) == 1.0
    assert entropy_scale(-100.0, config) == config.min_scale
    assert entropy_scale(-6.0, config) == pytest.approx(0.5)
    noise.reset(np.ones(2000, dtype=bool))
    assert not noise.state.any()


def test_actor_streams_to_replay_and_adopts_new_weights() -> None:
    torch.manual_seed(0)
    learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
    shard = ShardThread(grasp_signature(), ShardConfig(capacity=5_000, min_size_to_sample=1))
    with RedisServer() as redis_server:
        plane = ControlPlane(redis_server.url, "actor-test")
        plane.publish_weights(0, serialize(learner.policy_tensors(), version=0))
        actor = SimActor(
            "actor-0",
            CELL,
            "T0",
            num_cells=2,
            sink_factory=lambda name: ReplayWriter([shard.address], name, chunk_length=16),
            weights=plane,
            seed=0,
            version_check_every=10,
        )
        try:
            actor.run(30)
            assert actor.policy.version == 0
            size = shard.shard.table.size
            assert size >= 60  # every step of both cells (plus final observations of ended episodes)
            obs = {k: v[:1] for k, v in actor.obs.items()}
            expected = learner.act({k: torch.as_tensor(obs[k]) for k in OBSERVATION_KEYS}, deterministic=True)
            np.testing.assert_allclose(actor.policy.act(obs, deterministic=True)[0], expected.numpy(), atol=1e-6)
            for p in learner.policy.parameters():
                p.data.add_(0.1)
            plane.publish_weights(1, serialize(learner.policy_tensors(), version=1))
            actor.run(30)
            assert actor.policy.version == 1 and actor.stats.weight_updates == 2
            with ReplaySampler([shard.address], batch_size=256) as sampler:
                batch = sampler.sample()
            assert {0, 1} <= set(batch.policy_versions.tolist())
            assert batch.columns["action"].shape == (256, 8) and batch.columns["next_depth"].shape == (256, 32, 32)
        finally:
            actor.close()
            shard.stop()


def test_an_announced_version_is_loaded_at_the_next_step_and_logged() -> None:
    learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
    with RedisServer() as redis_server:
        plane = ControlPlane(redis_server.url, "announce")
        plane.publish_weights(0, serialize(learner.policy_tensors(), version=0))
        actor = SimActor(
            "actor-0",
            CELL,
            "T0",
            num_cells=1,
            sink_factory=lambda name: _Discard(),
            weights=plane,
            seed=0,
            version_check_every=10_000,  # polling alone would not see a new version in this test
            announcements=plane.weight_notifications(),
        )
        actor.step()
        assert actor.policy.version == 0
        published = time.time()
        plane.publish_weights(1, serialize(learner.policy_tensors(), version=1))
        steps = 0
        deadline = time.monotonic() + 10
        while actor.policy.version == 0 and time.monotonic() < deadline:
            actor.step()  # the announcement crosses the socket while the cells step
            steps += 1
        assert actor.policy.version == 1 and steps < 100
        assert [v for v, _ in actor.adoptions] == [0, 1]
        assert published <= actor.adoptions[-1][1] <= time.time()


class _Discard:
    tier = 0
    policy_version = 0

    def append(self, step: object) -> None:
        pass

    def end_episode(self, final_observation: object) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass
