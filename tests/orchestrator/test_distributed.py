"""The real distributed path: local Ray cluster, redis-server, two gRPC shards, two actors, learner."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest
import torch

from graspfleet.ports import free_port
from graspfleet.weights import deserialize
from learner.curriculum import CurriculumConfig
from orchestrator.config import demonstration_rows
from orchestrator.control_plane import ControlPlane
from orchestrator.distributed import DistributedRun, learner_threads, train_distributed
from orchestrator.redis_server import RedisServer
from replay.client import HashRing, shard_info
from replay.config import ShardConfig
from tests.helpers import small_train_config


def test_distributed_run_streams_learns_and_syncs_weights(tmp_path: Path) -> None:
    config = small_train_config(
        actors={"cells": 4, "count": 2},
        budget={"env_steps": 1200},
        learning={"batch_size": 32, "min_replay": 160},
        curriculum=CurriculumConfig(validate_every=10, validation_episodes=2),
        replay=ShardConfig(capacity=20_000, min_size_to_sample=1, sampler="prioritized"),
    )
    port = free_port()
    started: list[DistributedRun] = []
    seen: dict[str, object] = {"sizes": {}, "metrics": ""}

    def progress(row: dict[str, float]) -> None:
        run = started[0]
        seen["sizes"] = {s.address: shard_info(s.address).size for s in run.shards}
        seen["metrics"] = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        seen["actor_versions"] = row["actor_versions"]

    threads_before = torch.get_num_threads()
    with RedisServer() as redis:
        report = train_distributed(
            config,
            tmp_path / "run",
            shards=2,
            redis_url=redis.url,
            metrics_port=port,
            on_progress=progress,
            on_start=started.append,
        )
        plane = ControlPlane(redis.url, "run")
        state, events = plane.state(), plane.events()
        plane.close()
    assert report.env_steps >= 1200 and report.updates > 0
    # prioritized replay: every update sent its replay rows' new priorities to their shard
    assert report.replay_priority_updates == report.updates * (32 - demonstration_rows(config))
    assert started[0].metrics.registry.get_sample_value("graspfleet_learner_priority_update_failures_total") == 0
    sizes = seen["sizes"]
    assert isinstance(sizes, dict)
    # each actor's 4 cells go round the 2 shards from where its id hashes: trajectories arrived in both
    ring = HashRing(list(sizes))
    assert all(sorted(ring.shards_from(f"actor-{a}")) == sorted(sizes) for a in range(2))
    assert len(sizes) == 2 and all(size > 0 for size in sizes.values())
    assert seen["actor_versions"] >= 2  # actors adopted at least two published versions
    metrics = str(seen["metrics"])
    assert "graspfleet_learner_updates_total" in metrics and "graspfleet_env_steps_total" in metrics
    assert "graspfleet_weight_sync_seconds_count" in metrics
    assert report.weight_sync_seconds and all(0 <= s < 30 for s in report.weight_sync_seconds)
    assert (tmp_path / "run" / "policy.safetensors").is_file()
    assert (tmp_path / "run" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    # the curriculum's validations choose the best policy, kept with the version they validated
    best = json.loads((tmp_path / "run" / "best_policy.json").read_text())
    assert report.best_evaluation == best and best["episodes"] == 2 and 0 < best["updates"] <= report.updates
    assert deserialize((tmp_path / "run" / "best_policy.safetensors").read_bytes()).version == best["weights_version"]
    assert state["best_weights_version"] == str(best["weights_version"]) and state["best_tier"] == "T0"
    assert [e for e in events if e["kind"] == "best_policy"][-1]["best_weights_version"] == str(best["weights_version"])
    # ... and the learner's endpoint serves it
    assert "graspfleet_best_policy_success_rate" in metrics
    served = started[0].metrics.registry.get_sample_value
    assert served("graspfleet_best_policy_weights_version") == best["weights_version"]
    assert served("graspfleet_best_policy_success_rate") == best["success_rate"]
    # the learner's per-update series
    for channel in ("position", "force"):
        assert served("graspfleet_learner_grad_norm", {"channel": channel}) > 0
        assert 0 < served("graspfleet_learner_learning_rate", {"channel": channel}) <= config.sac.actor_lr
    assert served("graspfleet_learner_updates_per_second") > 0
    # the learner took the cores its actors leave it on this machine, and gave the rest back after
    assert served("graspfleet_learner_threads") == learner_threads(config, local_cluster=True)
    assert torch.get_num_threads() == threads_before
    assert served("graspfleet_learner_loss", {"name": "bc_loss"}) >= 0
    assert math.isfinite(served("graspfleet_learner_q_value")) and math.isfinite(
        served("graspfleet_learner_policy_entropy")
    )


def test_a_killed_actor_is_restarted_and_streams_again(tmp_path: Path) -> None:
    import os
    import signal

    import ray

    # the run ends when the restart is seen (the budget is only a backstop): restarting a process
    # takes seconds, in which the surviving actor alone could otherwise finish a small budget
    config = small_train_config(
        actors={"cells": 2, "count": 2}, budget={"env_steps": 60_000}, learning={"min_replay": 60}
    )
    port = free_port()
    started: list[DistributedRun] = []
    killed: list[int] = []
    after: dict[str, float] = {}

    class RestartSeen(Exception):
        pass

    def progress(row: dict[str, float]) -> None:
        actor = started[0].fleet.members["actor-0"].handle
        if not killed:
            pid = ray.get(actor.pid.remote(), timeout=30)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            after["env_steps"] = row["env_steps"]
            return
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        restarts = [line for line in metrics.splitlines() if line.startswith("graspfleet_actor_restarts_total")]
        if restarts and float(restarts[0].split()[-1]) >= 1:  # the killed actor reported from a new process
            after["last_env_steps"] = row["env_steps"]
            raise RestartSeen

    with pytest.raises(RestartSeen):
        train_distributed(
            config, tmp_path / "run", shards=1, metrics_port=port, on_progress=progress, on_start=started.append
        )
    assert killed
    assert after["last_env_steps"] > after["env_steps"]  # streaming went on after the kill


def test_a_crashed_learner_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    from orchestrator.control_plane import ControlPlane

    config = small_train_config(
        actors={"cells": 2, "count": 1}, budget={"env_steps": 500}, learning={"min_replay": 40, "checkpoint_every": 10}
    )
    run_dir = tmp_path / "run"
    crashed_at: dict[str, float] = {}

    def crash(row: dict[str, float]) -> None:
        if row["updates"] >= 20:  # at least one checkpoint (every 10 updates) exists
            crashed_at.update(row)
            raise RuntimeError("learner crash")

    try:
        train_distributed(config, run_dir, shards=1, on_progress=crash)
    except RuntimeError as exc:
        assert "learner crash" in str(exc)
    assert crashed_at and (run_dir / "learner" / "state.json").is_file()
    restored: list[int] = []
    report = train_distributed(
        config,
        run_dir,
        shards=1,
        on_start=lambda run: restored.append(shard_info(run.shards[0].address).restored_steps),
    )
    assert report.updates > crashed_at["updates"] >= 20  # the update count went on from the checkpoint
    assert restored[0] >= crashed_at["env_steps"]  # the replay too (the shard's checkpoint on the way out)
    assert report.weights_version > crashed_at["weights_version"]  # and so did the version numbering
    from orchestrator.redis_server import RedisServer

    with RedisServer(directory=run_dir / "redis") as server:  # the run's own AOF-persisted control plane
        events = ControlPlane(server.url, "run").events()
    assert any(e["kind"] == "learner_resumed" for e in events)


def test_a_run_rides_out_a_redis_restart_and_counts_the_retries(tmp_path: Path) -> None:
    import threading
    import time

    # stopped (a drain, as `graspfleet stop`) once it trained, streamed and synced past the outage;
    # the budget is a backstop, so a slow machine only makes it longer
    config = small_train_config(
        actors={"cells": 2, "count": 1}, budget={"env_steps": 10_000_000, "seconds": 150.0}, learning={"min_replay": 40}
    )
    started: list[DistributedRun] = []
    rows: list[dict[str, float]] = []
    outage: list[threading.Thread] = []
    run_over = threading.Event()
    redis_back = threading.Event()

    with RedisServer() as redis:

        def down_for_two_seconds() -> None:
            redis.stop()
            time.sleep(2.0)
            redis.start()
            redis_back.set()
            run_over.wait()  # the child's SIGTERM-with-parent follows the thread that started it

        def progress(row: dict[str, float]) -> None:
            rows.append(row)
            if not outage and row["updates"] >= 20:
                outage.append(threading.Thread(target=down_for_two_seconds))
                outage[0].start()
            if redis_back.is_set():
                at = next(r for r in rows if r["updates"] >= 20)
                went_on = (row[k] > at[k] for k in ("env_steps", "actor_versions"))
                if row["updates"] > at["updates"] + 50 and all(went_on):
                    started[0].plane.request_stop()

        report = train_distributed(
            config, tmp_path / "run", shards=1, redis_url=redis.url, on_progress=progress, on_start=started.append
        )
        plane = ControlPlane(redis.url, "run")
        latest, events = plane.latest_version(), plane.events()
        run_over.set()
        outage[0].join()
    at_outage = next(row for row in rows if row["updates"] >= 20)
    served = started[0].metrics.registry.get_sample_value
    assert served("graspfleet_control_plane_retries_total") > 0  # the driver waited it out, and says so
    # training, streaming and weight sync went on after it
    assert rows[-1]["updates"] > at_outage["updates"] + 50 and rows[-1]["env_steps"] > at_outage["env_steps"]
    assert rows[-1]["actor_versions"] > at_outage["actor_versions"]
    assert latest == report.weights_version  # the restarted Redis holds every version since (AOF)
    assert not [e for e in events if e["kind"] == "actor_failed"]


@pytest.mark.parametrize("case", ["resumed checkpoint", "running shard"])
def test_replay_that_does_not_fit_the_config_is_refused_before_the_run_starts(tmp_path: Path, case: str) -> None:
    from actors.trajectory import grasp_signature
    from graspfleet.spec import observation_spec
    from orchestrator.distributed import RunSetupError
    from replay import checkpoint
    from replay.process import ShardProcess
    from replay.table import ReplayTable

    config = small_train_config(budget={"env_steps": 100}, replay=ShardConfig(capacity=20_000, sampler="prioritized"))
    signature = grasp_signature(observation_spec(config.cell))
    if case == "resumed checkpoint":  # the run directory's replay was written with another capacity
        saved = ReplayTable(signature, ShardConfig(capacity=500))
        checkpoint.write(tmp_path / "run" / "replay" / "shard-0", saved, checkpoint.capture(saved))
        with pytest.raises(RunSetupError, match=r"capacity 500 differs from 20000.*remove .*replay to start with"):
            train_distributed(config, tmp_path / "run", shards=1)
    else:  # --replay names a shard that samples uniformly
        shard = ShardProcess(free_port(), signature, tmp_path)
        try:
            with pytest.raises(RunSetupError, match=r"sampler is uniform, .*prioritized: start the shards with"):
                train_distributed(config, tmp_path / "run", replay=[shard.address])
        finally:
            shard.stop()
    assert not (tmp_path / "run" / "learner").exists()  # nothing started, nothing written


def test_an_actor_waiting_on_the_rate_limiter_when_the_run_ends_still_flushes_everything(tmp_path: Path) -> None:
    # the actor produces far more than the learner's ratio admits and its writers hold one chunk
    # each, so whenever the budget ends it is inside a run call, waiting on the shard's limiter
    config = small_train_config(
        actors={"cells": 2, "count": 1, "writer_max_pending_chunks": 1},
        budget={"env_steps": 10_000_000, "seconds": 12.0},
        learning={"min_replay": 40, "updates_per_step": 4.0},
    )
    started: list[DistributedRun] = []
    blocked: list[float] = []

    def progress(row: dict[str, float]) -> None:
        blocked.append(shard_info(started[0].shards[0].address).rate_limiter_insert_blocked_seconds)

    with RedisServer() as redis:
        report = train_distributed(
            config, tmp_path / "run", shards=1, redis_url=redis.url, on_progress=progress, on_start=started.append
        )
        events = ControlPlane(redis.url, "run").events()
    assert blocked and blocked[-1] > 2.0  # the limiter held the actor back for seconds
    ends = [e for e in events if e["kind"] in ("actor_drained", "actor_drain_failed", "actor_drain_timeout")]
    assert [e["kind"] for e in ends] == ["actor_drained"], ends
    appended, accepted = int(ends[0]["appended_steps"]), int(ends[0]["accepted_steps"])
    assert appended == accepted == report.replay_inserted_steps > 0  # the shard holds every step appended


def test_a_killed_replay_shard_is_restarted_from_its_checkpoint_and_nothing_accepted_is_lost(tmp_path: Path) -> None:
    # checkpoints every second; the shard is SIGKILLed (no final checkpoint) once it has taken one;
    # the run is stopped as `graspfleet stop` would (a drain) once the restarted shard took 100
    # more steps, so a slow machine only makes it longer (the budget is a backstop)
    config = small_train_config(
        actors={"cells": 2, "count": 2},
        budget={"env_steps": 10_000_000, "seconds": 150.0},
        learning={"min_replay": 40},
        replay=ShardConfig(capacity=20_000, min_size_to_sample=1, checkpoint_interval=1.0),
    )
    started: list[DistributedRun] = []
    target: list[int] = []
    """the shard to kill: the first seen holding data (writers map to shards by hashing their id
    onto the shards' addresses, which are free ports, so one shard may get none)"""
    checkpoints_with_data: list[int] = []
    killed: dict[str, int] = {}
    inserted_after: list[int] = []

    def progress(row: dict[str, float]) -> None:
        if not target:
            sizes = [shard_info(shard.address).size for shard in started[0].shards]
            target.extend(i for i, size in enumerate(sizes) if size > 0)
            if not target:
                return
        shard = started[0].shards[target[0]]
        info = shard_info(shard.address)
        if not checkpoints_with_data:
            checkpoints_with_data.append(info.checkpoints)
        if killed:
            inserted_after.append(int(info.inserted_steps))
            if inserted_after[-1] > killed["inserted"] + 100:
                started[0].plane.request_stop()
        # a checkpoint begun after the shard held data (the one under way may have begun before)
        elif checkpoints_with_data and info.checkpoints >= checkpoints_with_data[0] + 2:
            killed["inserted"] = int(info.inserted_steps)
            shard.kill()

    with RedisServer() as redis:
        report = train_distributed(
            config, tmp_path / "run", shards=2, redis_url=redis.url, on_progress=progress, on_start=started.append
        )
        events = ControlPlane(redis.url, "run").events()
    address = started[0].shards[target[0]].address
    assert killed, "the shard never took a checkpoint"
    restarts = [e for e in events if e["kind"] == "shard_restarted"]
    assert [e["shard"] for e in restarts] == [address]
    assert int(restarts[0]["exit_code"]) == -9 and 0 < int(restarts[0]["restored_steps"]) <= killed["inserted"]
    served = started[0].metrics.registry.get_sample_value
    assert served("graspfleet_replay_shard_restarts_total", {"shard": address}) == 1
    assert served("graspfleet_replay_shards_up") == 2
    # it took trajectories again after the restart ...
    assert inserted_after and inserted_after[-1] > killed["inserted"]
    # ... and what the shard had accepted but not checkpointed came back from the writers: every
    # step each actor appended is in replay, once
    assert not [e for e in events if e["kind"] == "actor_failed"]
    drained = [e for e in events if e["kind"] == "actor_drained"]
    assert len(drained) == 2 and all(e["appended_steps"] == e["accepted_steps"] for e in drained)
    assert sum(int(e["appended_steps"]) for e in drained) == report.replay_inserted_steps


def test_an_actor_whose_writer_keeps_failing_is_restarted_until_the_limit_stops_the_run(tmp_path: Path) -> None:
    """A fault restarts do not cure, on the real path: the shard's transport limit (1 MiB) is
    smaller than one chunk (160 steps ≈ 1.3 MB), so every actor process's writer is refused."""
    from actors.trajectory import grasp_signature
    from graspfleet.spec import observation_spec
    from orchestrator.fleet import ActorFailing
    from replay.process import ShardProcess

    config = small_train_config(
        actors={"cells": 2, "count": 1, "chunk_length": 160}, budget={"env_steps": 10_000_000, "seconds": 120.0}
    )
    signature = grasp_signature(observation_spec(config.cell))
    shard = ShardProcess(free_port(), signature, tmp_path, ["--max-message-mb", "1", "--max-chunk-mb", "1"])
    try:
        with RedisServer() as redis:
            with pytest.raises(ActorFailing, match=r"actor-0: failed 3 times within 600 s.*RESOURCE_EXHAUSTED"):
                train_distributed(config, tmp_path / "run", redis_url=redis.url, replay=[shard.address])
            events = ControlPlane(redis.url, "run").events()
    finally:
        shard.stop()
    failures = [e for e in events if e["kind"] == "actor_failed"]
    # (each process reported a few steps before its first chunk was refused: reports do not excuse failures)
    assert [(e["actor"], e["recent_failures"]) for e in failures] == [("actor-0", str(n)) for n in (1, 2, 3)]
    assert all("RESOURCE_EXHAUSTED" in e["error"] for e in failures)
    assert (tmp_path / "run" / "learner" / "state.json").is_file()  # the learner checkpointed on the way out


def test_weight_sync_latency_counts_a_version_once_every_running_actor_runs_it() -> None:
    from orchestrator.distributed import WeightSyncTracker

    sync = WeightSyncTracker(["actor-0", "actor-1"])
    sync.published(1, at=10.0)
    sync.published(2, at=11.0)
    assert sync.adopted("actor-0", 1, at=10.2) == []  # one of two actors
    assert sync.adopted("actor-1", 2, at=11.5) == [1.5]  # actor 1 jumped to 2: version 1 is everywhere now
    assert sync.adopted("actor-0", 2, at=11.25) == [0.5]
    sync.published(3, at=12.0)
    assert sync.adopted("actor-0", 3, at=12.1) == [] and sync.pending.keys() == {3}
    assert sync.latencies == [1.5, 0.5]
    # actor-1 drains before it loads version 3: every actor left runs it, adopted at 12.1
    assert sync.set_fleet(["actor-0"]) == [pytest.approx(0.1)]
    # a new actor joins: a version completes only once it runs it too
    sync.set_fleet(["actor-0", "actor-2"])
    sync.published(4, at=13.0)
    assert sync.adopted("actor-0", 4, at=13.1) == []
    assert sync.adopted("actor-2", 4, at=13.4) == [pytest.approx(0.4)]


def test_the_learner_leaves_cores_to_the_actors_on_a_machine_it_shares_with_them() -> None:
    one, eight = small_train_config(actors={"count": 1}), small_train_config(actors={"count": 8})
    assert learner_threads(one, local_cluster=True, cores=2) == 1
    assert learner_threads(eight, local_cluster=True, cores=2) == 1
    assert learner_threads(one, local_cluster=True, cores=16) == 15
    assert learner_threads(eight, local_cluster=True, cores=16) == 8  # at most half the cores go
    assert learner_threads(one, local_cluster=True, cores=1) == 1
    assert learner_threads(eight, local_cluster=False, cores=16) is None  # actors on other nodes: every core
    assert learner_threads(small_train_config(learning={"threads": 3}), local_cluster=False) == 3


@pytest.mark.parametrize("demonstrations", [0, 100])
def test_the_shards_rate_limiters_hold_the_ratio_the_serial_loop_keeps(demonstrations: int) -> None:
    """Actor steps go to the shards; the learner takes every update their limiters allow, each
    sampling the batch's replay share from one shard: updates per actor step come out as
    ``updates_per_step``, as in the serial loop, whatever share of the batch demonstrations take."""
    from orchestrator.config import demonstration_rows
    from orchestrator.distributed import shard_options
    from replay.config import ShardConfig
    from replay.rate_limiter import RateLimiter

    config = small_train_config(
        actors={"cells": 8}, learning={"batch_size": 256, "updates_per_step": 0.5, "demonstrations": demonstrations}
    )
    options = shard_options(config, shards=2)
    limiters = [
        RateLimiter(
            ShardConfig(
                min_size_to_sample=int(options["min_size"]),
                samples_per_insert=float(options["samples_per_insert"]),
                error_buffer=float(options["error_buffer"]),
            )
        )
        for _ in range(2)
    ]
    rows = config.learning.batch_size - demonstration_rows(config)
    assert rows == (128 if demonstrations else 256)
    actor_steps, updates = 20_000, 0
    for _ in range(actor_steps):
        for cell in range(config.actors.cells):
            limiters[cell % 2].record_insert(1)
        while ready := [limiter for limiter in limiters if limiter.can_sample()]:
            ready[0].record_sample(rows)
            updates += 1
    assert updates / actor_steps == pytest.approx(config.learning.updates_per_step, rel=0.03)
