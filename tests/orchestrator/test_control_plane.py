"""The Redis control plane against a real redis-server on a free port."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from orchestrator.control_plane import ControlPlane, StaleWeights
from orchestrator.redis_server import RedisServer


@pytest.fixture
def server() -> RedisServer:
    with RedisServer() as s:
        yield s


def test_weights_registry_keeps_every_version(server: RedisServer) -> None:
    plane = ControlPlane(server.url, "run-a")
    assert plane.latest_version() == -1 and plane.fetch_weights() is None
    for version in (0, 1, 2):
        plane.publish_weights(version, bytes([version]) * 10)
    assert plane.latest_version() == 2
    assert plane.fetch_weights() == (2, b"\x02" * 10)
    assert plane.fetch_weights(0) == (0, b"\x00" * 10)
    assert plane.weight_versions() == [0, 1, 2]
    with pytest.raises(StaleWeights, match="version 1 is not newer than the published 2"):
        plane.publish_weights(1, b"old")
    assert plane.fetch_weights(1) == (1, b"\x01" * 10)  # the stale publish changed nothing


def test_runs_are_namespaced(server: RedisServer) -> None:
    a, b = ControlPlane(server.url, "a"), ControlPlane(server.url, "b")
    a.publish_weights(5, b"x")
    a.set_desired_actors(4)
    assert b.latest_version() == -1 and b.desired_actors() is None
    with pytest.raises(ValueError, match="without ':'"):
        ControlPlane(server.url, "bad:name")


def test_state_shards_actors_and_events(server: RedisServer) -> None:
    plane = ControlPlane(server.url, "run")
    plane.set_state(tier="T1", status="training", step=42)
    assert plane.state() == {"tier": "T1", "status": "training", "step": "42"}
    plane.heartbeat_shard("10.0.0.1:50051", now=100.0)
    plane.heartbeat_shard("10.0.0.2:50051", now=125.0)
    assert plane.shards(max_age=10, now=130.0) == ["10.0.0.2:50051"]
    assert plane.shards(max_age=60, now=130.0) == ["10.0.0.1:50051", "10.0.0.2:50051"]
    plane.set_desired_actors(6)
    plane.set_desired_actors(2, kind="arm")
    assert plane.desired_actors() == 6 and plane.desired_actors("arm") == 2
    with pytest.raises(ValueError):
        plane.set_desired_actors(-1)
    assert plane.actor_counts() == {"desired": 6, "running": None, "draining": None}
    plane.set_actor_counts(running=5, draining=1)
    assert plane.actor_counts() == {"desired": 6, "running": 5, "draining": 1}
    assert plane.actor_counts("arm") == {"desired": 2, "running": None, "draining": None}
    plane.append_event("promotion", {"from": "T0", "to": "T1", "weights_version": 12})
    events = plane.events()
    assert events[0]["kind"] == "promotion" and events[0]["to"] == "T1"
    with pytest.raises(ValueError, match="kind"):  # a field may not overwrite the event's kind
        plane.append_event("actors_scaled", {"kind": "sim"})
    assert not plane.stop_requested()
    plane.request_stop()
    assert plane.stop_requested()
    plane.clear_stop()
    assert not plane.stop_requested()


def test_commands_retry_through_a_redis_restart_and_aof_keeps_the_data(server: RedisServer) -> None:
    plane = ControlPlane(server.url, "run", retries=200, backoff=0.05, max_backoff=0.2, socket_timeout=1.0)
    plane.publish_weights(3, b"weights")
    server.stop()
    seen: list[int | BaseException] = []

    def query() -> None:
        try:
            seen.append(plane.latest_version())
        except BaseException as exc:
            seen.append(exc)

    # the command retries on a thread while this one restarts the server: the kernel stops a child
    # when the thread that started it ends (graspfleet/processes.py), so this thread must start it
    querying = threading.Thread(target=query)
    started = time.monotonic()
    querying.start()
    time.sleep(0.5)
    server.start()
    querying.join(60)
    assert seen == [3]  # retried until the server came back, data from the AOF
    assert time.monotonic() - started >= 0.4
    assert plane.reconnects > 0


def test_gives_up_after_its_retries(server: RedisServer) -> None:
    retried: list[None] = []
    plane = ControlPlane(
        server.url, "run", retries=2, backoff=0.01, socket_timeout=0.5, on_retry=lambda: retried.append(None)
    )
    server.stop()
    import redis

    with pytest.raises(redis.ConnectionError):
        plane.latest_version()
    assert plane.reconnects == 2 == len(retried)  # each retry reaches the metric


def test_cli_status_reads_a_run(server: RedisServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    plane = ControlPlane(server.url, "myrun")
    plane.set_state(status="training", tier="T1")
    plane.publish_weights(4, b"w")
    plane.heartbeat_shard("127.0.0.1:1234")
    plane.heartbeat_shard("127.0.0.1:4321", now=time.time() - 90)  # silent for 90 s
    plane.append_event("promotion", {"to": "T1"})
    (tmp_path / "control_plane.json").write_text(json.dumps({"redis_url": server.url, "run": "myrun"}))
    result = CliRunner().invoke(app, ["status", "--run-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["state"]["tier"] == "T1" and data["weights_version"] == 4
    assert data["shards"] == ["127.0.0.1:1234"] and data["events"][0]["kind"] == "promotion"
    assert list(data["shards_down"]) == ["127.0.0.1:4321"] and 89 < data["shards_down"]["127.0.0.1:4321"] < 120
    table = CliRunner().invoke(app, ["status", "--run-dir", str(tmp_path)])
    assert "replay shards down" in table.output
    assert re.search(r"127\.0\.0\.1:4321 \(silent (9\d|1[01]\d) s\)", table.output)  # 90 s and what the call took
    missing = CliRunner().invoke(app, ["status", "--run-dir", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_new_versions_are_announced_and_a_broken_subscription_recovers(server: RedisServer) -> None:
    plane = ControlPlane(server.url, "notify")
    notices = plane.weight_notifications()
    assert notices.wait(0.0) is None  # subscribes; nothing announced yet
    before = time.time()
    plane.publish_weights(3, b"a")
    plane.publish_weights(4, b"b")
    deadline = time.monotonic() + 5
    reads: list[int] = []
    while (not reads or reads[-1] < 4) and time.monotonic() < deadline:
        if (newest := notices.wait(1.0)) is not None:
            reads.append(newest)
    # each read is the highest announced since the one before (both at once, or 3 then 4)
    assert reads in ([4], [3, 4])
    waited = time.monotonic()
    assert notices.wait(0.2) is None and time.monotonic() - waited >= 0.2  # nothing new: waits it out
    published = plane.published_at()
    assert set(published) == {3, 4} and before - 1 < published[3] <= published[4] < time.time() + 1
    with pytest.raises(StaleWeights):
        plane.publish_weights(4, b"again")
    assert notices.wait(0.0) is None  # a refused publish announces nothing
    server.stop()
    assert notices.wait(0.0) is None  # Redis gone: no notice, no exception
    server.start()
    assert notices.wait(0.0) is None  # resubscribed
    plane.publish_weights(5, b"c")
    assert notices.wait(5.0) == 5  # returns when it comes


def test_actors_scale_and_stop_from_the_cli(server: RedisServer, tmp_path: Path) -> None:
    """The operator's verbs against a real control plane: no driver runs, so the count is stored and
    waiting for it is refused; unknown kinds are refused; status and the event stream show it."""
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    (tmp_path / "control_plane.json").write_text(json.dumps({"redis_url": server.url, "run": "ops"}))
    runner = CliRunner()
    scaled = runner.invoke(app, ["actors", "scale", "3", "--run-dir", str(tmp_path)])
    assert scaled.exit_code == 0, scaled.output
    assert "desired sim actors None → 3" in scaled.output and "not started" in scaled.output
    plane = ControlPlane(server.url, "ops")
    assert plane.desired_actors() == 3
    waited = runner.invoke(app, ["actors", "scale", "4", "--run-dir", str(tmp_path), "--wait", "5"])
    assert waited.exit_code == 2 and "nothing to wait for" in waited.output
    refused = runner.invoke(app, ["actors", "scale", "2", "--kind", "arm", "--run-dir", str(tmp_path)])
    assert refused.exit_code == 2 and "reconcile only sim" in refused.output
    assert plane.desired_actors("arm") is None
    negative = runner.invoke(app, ["actors", "scale", "-1", "--run-dir", str(tmp_path)])
    assert negative.exit_code != 0 and plane.desired_actors() == 4
    plane.set_actor_counts(running=3, draining=1)
    status = runner.invoke(app, ["status", "--run-dir", str(tmp_path), "--json"])
    assert json.loads(status.output)["actors"] == {"sim": {"desired": 4, "running": 3, "draining": 1}}
    assert runner.invoke(app, ["stop", "--run-dir", str(tmp_path)]).exit_code == 0
    assert plane.stop_requested()
    scaled_events = [e for e in plane.events() if e["kind"] == "actors_scaled"]
    assert [(e["from"], e["to"]) for e in scaled_events] == [("unset", "3"), ("3", "4")]
    assert plane.events()[-1]["kind"] == "stop_requested"
