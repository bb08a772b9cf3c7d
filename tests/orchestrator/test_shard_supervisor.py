"""The driver's shard supervisor against real shard processes and a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from graspfleet.ports import free_port
from orchestrator.control_plane import ControlPlane
from orchestrator.redis_server import RedisServer
from orchestrator.shard_supervisor import ShardSupervisor
from replay.client import shard_info
from replay.process import ShardProcess
from tests.replay_helpers import SMALL


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with RedisServer() as server:
        plane = ControlPlane(server.url, "supervised")
        yield plane
        plane.close()


class Watched:
    """A supervisor over ``addresses`` with the events and metrics it produced."""

    def __init__(self, addresses: list[str], processes: list[ShardProcess], plane: ControlPlane) -> None:
        self.events: list[tuple[str, Mapping[str, str | int | float]]] = []
        self.registry = CollectorRegistry()
        self.supervisor = ShardSupervisor(
            addresses,
            processes,
            plane,
            Gauge("shards_up", "", registry=self.registry),
            Counter("restarts", "", ["shard"], registry=self.registry),
            on_event=lambda kind, fields: self.events.append((kind, fields)),
            probe_timeout=0.5,
        )

    def check(self) -> list[str]:
        """One round; the kinds of every event so far."""
        self.supervisor.check()
        return [kind for kind, _ in self.events]

    def shards_up(self) -> float | None:
        return self.registry.get_sample_value("shards_up")


def test_an_exited_shard_of_the_run_is_started_again_and_heartbeated(tmp_path: Path, plane: ControlPlane) -> None:
    shard = ShardProcess(free_port(), SMALL, tmp_path, ["--min-size", "1"])
    try:
        watched = Watched([shard.address], [shard], plane)
        assert watched.check() == [] and watched.shards_up() == 1
        plane.heartbeat_shard(shard.address, now=time.time() - 100)  # as if its last heartbeat were old
        shard.kill()
        assert watched.check() == ["shard_restarted"]
        assert watched.events[0][1]["exit_code"] == -9
        assert shard.process.poll() is None and shard_info(shard.address).size == 0  # serving again
        assert plane.shards(max_age=5) == [shard.address]  # and heartbeated
        assert watched.registry.get_sample_value("restarts_total", {"shard": shard.address}) == 1
    finally:
        shard.stop()


def test_a_shard_the_run_was_given_is_reported_down_once_and_up_again(tmp_path: Path, plane: ControlPlane) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    watched = Watched([address], [], plane)
    watched.check()
    assert watched.check() == ["shard_down"] and watched.shards_up() == 0
    assert address not in plane.shards(max_age=5)
    shard = ShardProcess(port, SMALL, tmp_path)  # whatever runs it brought it back
    try:
        assert watched.check() == ["shard_down", "shard_up"] and watched.shards_up() == 1
        assert address in plane.shards(max_age=5)
    finally:
        shard.stop()
    assert watched.check()[-1] == "shard_down"  # not the run's own: never restarted
    assert shard.process.poll() is not None


def test_a_shard_that_will_not_start_again_is_retried_after_a_doubling_wait(
    tmp_path: Path, plane: ControlPlane
) -> None:
    from replay import checkpoint
    from replay.config import ShardConfig
    from replay.table import ReplayTable

    shard = ShardProcess(
        free_port(), SMALL, tmp_path, ["--checkpoint-dir", str(tmp_path / "ckpt"), "--capacity", "1000"]
    )
    try:
        watched = Watched([shard.address], [shard], plane)
        shard.kill()
        # what it would restore now is another table's: it refuses to start
        other = ReplayTable(SMALL, ShardConfig(capacity=500))
        checkpoint.write(tmp_path / "ckpt", other, checkpoint.capture(other))
        assert watched.check() == ["shard_restart_failed", "shard_down"]
        failed = watched.events[0][1]
        assert "capacity 500 differs from 1000" in str(failed["error"]) and failed["retry_in_s"] == 1.0
        assert watched.check() == ["shard_restart_failed", "shard_down"]  # not tried again before the wait
        time.sleep(1.1)
        assert watched.check()[-1] == "shard_restart_failed" and watched.events[-1][1]["retry_in_s"] == 2.0
        assert watched.registry.get_sample_value("restarts_total", {"shard": shard.address}) is None
    finally:
        shard.stop()
