"""The simulation actor with real parts: grasp cells, a gRPC replay shard, redis-server weights."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from actors.exploration import ChannelNoise, ExplorationConfig, entropy_scale
from actors.sim_actor import ActingPolicy, SimActor
from actors.trajectory import grasp_signature
from actors.weight_prefetch import DecodedWeights, WeightPrefetcher, decode_policy_weights
from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.config import ActionConfig
from graspfleet.config import to_mapping
from graspfleet.networks import NetworkConfig
from graspfleet.ports import free_port
from graspfleet.sim.config import CellConfig
from graspfleet.spec import OBSERVATION_KEYS, observation_spec
from graspfleet.weights import serialize
from learner.sac import SACLearner
from orchestrator.actor_worker import ActorSettings, ActorWorker
from orchestrator.control_plane import ControlPlane
from orchestrator.redis_server import RedisServer
from replay.client import ReplaySampler, ReplayWriter, shard_info
from replay.config import ShardConfig
from replay.process import ShardProcess
from tests.helpers import make_batch, small_train_config
from tests.replay_helpers import ShardThread

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
            assert actor.policy.version == 1 and actor.policy.installs == 2
            with ReplaySampler([shard.address], batch_size=256) as sampler:
                batch = sampler.sample()
            assert {0, 1} <= set(batch.policy_versions.tolist())
            assert batch.columns["action"].shape == (256, 8) and batch.columns["next_depth"].shape == (256, 32, 32)
        finally:
            actor.close()
            shard.stop()


class _ThreadRecordingWeights:
    """The control plane's weights, noting which thread fetched each blob; the first ``failures``
    fetches raise."""

    def __init__(self, plane: ControlPlane, failures: int = 0) -> None:
        self.plane = plane
        self.failures = failures
        self.fetched_by: list[str] = []

    def latest_version(self) -> int:
        return self.plane.latest_version()

    def fetch_weights(self, version: int | None = None) -> tuple[int, bytes] | None:
        self.fetched_by.append(threading.current_thread().name)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("injected fetch failure")
        return self.plane.fetch_weights(version)


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_announced_weights_are_fetched_and_swapped_in_beside_the_steps() -> None:
    """An announced version is fetched, decoded and put in use by the prefetch thread while the
    actor is not stepping at all; the next step stamps it on its trajectories and applies the
    curriculum tier read with it, unless the actor has since seen a newer generation."""
    learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
    with RedisServer() as redis_server:
        plane = ControlPlane(redis_server.url, "prefetch")
        plane.publish_weights(0, serialize(learner.policy_tensors(), version=0))
        plane.set_curriculum("T0", 0, {})
        weights = _ThreadRecordingWeights(plane)
        sink = _Discard()
        actor = SimActor(
            "actor-0",
            CELL,
            "T0",
            num_cells=1,
            sink_factory=lambda name: sink,
            weights=weights,
            seed=0,
            version_check_every=10_000,  # polling alone would not see a new version in this test
            announcements=plane.weight_notifications(),
            tiers=plane,
        )
        try:
            actor.step()  # the first step polls and loads version 0 itself
            assert actor.policy.version == 0 and weights.fetched_by == ["MainThread"] and sink.policy_version == 0
            assert actor.prefetcher is not None
            assert _wait_for(lambda: actor.prefetcher.announcements.pubsub is not None)  # type: ignore[attr-defined]
            plane.set_curriculum("T1", 1, {})
            published = time.time()
            plane.publish_weights(1, serialize(learner.policy_tensors(), version=1))
            assert _wait_for(lambda: actor.policy.version == 1)  # in use without a step
            # the tier is read right after the version is installed: wait for that read too
            assert _wait_for(lambda: actor.prefetcher._tier is not None)  # type: ignore[union-attr]
            assert weights.fetched_by == ["MainThread", "weight-prefetch"]
            assert actor.tier.name == "T0" and sink.policy_version == 0  # the cells switch at a step
            actor.step()
            assert actor.tier.name == "T1" and actor.generation == 1 and sink.policy_version == 1
            assert weights.fetched_by == ["MainThread", "weight-prefetch"]  # the step fetched nothing
            adoptions = actor.take_adoptions()  # logged for the weight-sync latency
            assert [v for v, _ in adoptions] == [0, 1] and published <= adoptions[-1][1] <= time.time()
            assert actor.take_adoptions() == []  # taken once

            # a tier read with an older generation than the actor's does not switch it back
            plane.publish_weights(2, serialize(learner.policy_tensors(), version=2))
            assert _wait_for(lambda: actor.policy.version == 2)
            actor.set_tier("T2", 2)  # as a version check reading a newer curriculum would
            actor.step()
            assert actor.tier.name == "T2" and actor.generation == 2 and sink.policy_version == 2
        finally:
            actor.close()
        assert not actor.prefetcher.alive


def _seeded_learner(seed: int) -> SACLearner:
    torch.manual_seed(seed)
    return SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")


def test_an_act_reports_the_version_that_computed_it_while_another_thread_installs() -> None:
    """Versions made active back to back from another thread never change the policy under an
    inference: every act's actions are those of the version it reports. Three distinct weight sets
    take turns (version mod 3), so a copy reloaded under an inference shows."""
    sets = [decode_policy_weights(serialize(_seeded_learner(seed).policy_tensors(), version=0)) for seed in range(3)]
    policy = ActingPolicy(CELL, NetworkConfig(), ActionConfig())
    obs = make_batch(cells=4).reset(seed=0)[0]
    expected = []
    for version, weights in enumerate(sets):
        policy.install(weights._replace(version=version))
        expected.append(policy.act(obs, deterministic=True)[0])
    assert min(np.abs(expected[i] - expected[i - 1]).max() for i in range(3)) > 1e-3
    stop = threading.Event()

    def install_back_to_back() -> None:
        version = 3
        while not stop.is_set():
            policy.install(sets[version % 3]._replace(version=version))
            version += 1

    installer = threading.Thread(target=install_back_to_back)
    installer.start()
    try:
        seen = set()
        for _ in range(150):
            actions, _, version = policy.act(obs, deterministic=True)
            np.testing.assert_allclose(actions, expected[version % 3], atol=1e-6)
            seen.add(version)
    finally:
        stop.set()
        installer.join()
    assert len(seen) > 10  # the installs really ran between the acts
    assert policy.installs == policy.version + 1


def test_a_failed_prefetch_is_counted_and_the_next_announcement_is_installed() -> None:
    with RedisServer() as redis_server:
        plane = ControlPlane(redis_server.url, "prefetch-failure")
        learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
        weights = _ThreadRecordingWeights(plane, failures=1)
        installed: list[DecodedWeights] = []
        prefetcher = WeightPrefetcher(plane.weight_notifications(), weights, installed.append, retry_seconds=0.05)
        try:
            assert _wait_for(lambda: prefetcher.announcements.pubsub is not None)  # type: ignore[attr-defined]
            plane.publish_weights(1, serialize(learner.policy_tensors(), version=1))
            assert _wait_for(lambda: prefetcher.failures == 1)
            assert installed == [] and prefetcher.installed_version == -1 and prefetcher.alive
            plane.publish_weights(2, serialize(learner.policy_tensors(), version=2))
            assert _wait_for(lambda: prefetcher.installed_version == 2)
            assert [w.version for w in installed] == [2]
            published = learner.policy_tensors()
            assert set(installed[0].encoder) == {
                k.removeprefix("encoder.") for k in published if k.startswith("encoder.")
            }
            assert prefetcher.take_tier() is None  # no tier source
        finally:
            prefetcher.close()
        assert not prefetcher.alive


def test_an_actor_worker_starts_while_its_shard_is_down_and_streams_once_it_is_up(tmp_path: Path) -> None:
    """Building an actor's writers asks its shard nothing: the actor steps while the shard is down
    (a restart, a slow start), and every step reaches the shard once it listens."""
    port = free_port()
    learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
    train = small_train_config(actors={"cells": 2})
    with RedisServer() as redis_server:
        ControlPlane(redis_server.url, "late-shard").publish_weights(0, serialize(learner.policy_tensors(), 0))
        worker = ActorWorker(
            "actor-0", to_mapping(ActorSettings.of_run(train)), redis_server.url, "late-shard", [f"127.0.0.1:{port}"], 0
        )
        shard = None
        try:
            assert worker.run(20)["env_steps"] == 40  # nothing listens on the port yet
            assert all(writer.stats().accepted_steps == 0 for writer in worker.writers)
            shard = ShardProcess(port, grasp_signature(observation_spec(CELL)), tmp_path, ["--capacity", "5000"])
            worker.run(10)
            closed = worker.close(timeout=60)
            assert closed["accepted_steps"] == closed["appended_steps"] >= 60
            assert shard_info(shard.address).size == closed["appended_steps"]
        finally:
            if shard is not None:
                shard.stop()


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


class _HeldTiers:
    """The control plane's tier, read only once the test lets it through."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.asked = threading.Event()
        self.release = threading.Event()

    def curriculum_tier(self) -> tuple[str, int] | None:
        self.asked.set()
        self.release.wait(10)
        return self.plane.curriculum_tier()


def test_a_prefetched_version_is_in_use_before_the_tier_is_read() -> None:
    """The tier read is no round trip on the version's way into use: the version is installed while
    that read still waits, and the tier it returns is then handed to the next step."""
    with RedisServer() as redis_server:
        plane = ControlPlane(redis_server.url, "prefetch-tier")
        plane.set_curriculum("T1", 3, {})
        learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
        tiers = _HeldTiers(plane)
        installed: list[int] = []
        prefetcher = WeightPrefetcher(
            plane.weight_notifications(), plane, lambda w: installed.append(w.version), tiers=tiers
        )
        try:
            assert _wait_for(lambda: prefetcher.announcements.pubsub is not None)  # type: ignore[attr-defined]
            plane.publish_weights(4, serialize(learner.policy_tensors(), version=4))
            assert tiers.asked.wait(10)
            assert installed == [4] and prefetcher.take_tier() is None  # in use; the tier still on its way
            tiers.release.set()
            deadline = time.monotonic() + 10
            while (tier := prefetcher.take_tier()) is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert tier == ("T1", 3) and prefetcher.take_tier() is None  # handed over once
        finally:
            tiers.release.set()
            prefetcher.close()


class _Silence:
    """An announcement channel on which nothing is ever announced."""

    def wait(self, timeout: float) -> int | None:
        time.sleep(timeout)
        return None

    def close(self) -> None:
        pass


class _NoWeights:
    def latest_version(self) -> int:
        return -1

    def fetch_weights(self, version: int | None = None) -> tuple[int, bytes] | None:
        return None


def _prefetcher_niceness(niceness: int | None) -> tuple[int | None, int]:
    """(the prefetch thread's niceness, the calling thread's) with a prefetcher asked for ``niceness``."""
    prefetcher = WeightPrefetcher(_Silence(), _NoWeights(), lambda w: None, wait_seconds=0.05, niceness=niceness)
    try:
        assert _wait_for(lambda: prefetcher.niceness == niceness or niceness is None)
        return prefetcher.niceness, os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        prefetcher.close()


@pytest.mark.skipif(sys.platform != "linux", reason="niceness is per thread on Linux only")
def test_the_prefetch_thread_takes_its_own_niceness_and_no_other_thread_does() -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert _prefetcher_niceness(None) == (base, base)
    assert _prefetcher_niceness(min(base + 3, 19)) == (min(base + 3, 19), base)  # raising it is always allowed
    # as Ray starts an actor: the process at niceness 15, its prefetch thread asking for 0, which
    # takes CAP_SYS_NICE (root here; elsewhere the thread keeps 15 and the actor runs on)
    script = (
        "from tests.actors.test_sim_actor import _prefetcher_niceness; import os; "
        "print(*_prefetcher_niceness(0), os.getpriority(os.PRIO_PROCESS, os.getpid()))"
    )
    out = subprocess.run(
        ["nice", "-n", "15", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    prefetch, caller, process = map(int, out.stdout.split())
    started = min(base + 15, 19)
    assert (caller, process) == (started, started)
    assert prefetch == (0 if os.geteuid() == 0 else started)
