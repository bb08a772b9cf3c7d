"""Scaling actor counts on a real multi-node Ray cluster: a head and a worker node started with
``ray start`` on loopback, the learner training throughout, ``graspfleet actors scale`` moving the
fleet 2 → 6 → 1, ``graspfleet stop`` ending it; no step a writer had acknowledged is lost."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from graspfleet.ports import free_port
from orchestrator.control_plane import ControlPlane
from orchestrator.redis_server import RedisServer
from tests.helpers import small_run_arguments

HEAD_SLOTS, WORKER_SLOTS = 2, 4
"""``sim_slot`` resources per node: six actors need both nodes."""


HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
"""Loopback addresses, one per node (Ray replaces 127.0.0.1 by the host's outward address)."""


def _ray_start(ip: str, slots: int, temp_dir: str, *arguments: str) -> subprocess.Popen[bytes]:
    """A node started with ``ray start``; token authentication comes from the environment."""
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--block",
        f"--node-ip-address={ip}",
        "--num-cpus=1",
        f"--resources={json.dumps({'sim_slot': slots})}",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *arguments,
    ]
    with (Path(temp_dir) / f"ray-start-{ip}.log").open("w") as log:  # read when a node fails to start
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(node: subprocess.Popen[bytes]) -> None:
    """`ray start --block` drains and stops its node's processes on SIGTERM."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGTERM)
    try:
        node.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(10)


@contextlib.contextmanager
def loopback_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A head node and a worker node, each its own raylet on its own loopback address, with token
    authentication (a token of the test's own, for the nodes, `ray status` and this driver);
    yields the head's address."""
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="gf-ray-", dir="/tmp")  # short: Ray's socket paths are long
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    address = f"{HEAD_IP}:{port}"
    nodes = [_ray_start(HEAD_IP, HEAD_SLOTS, temp_dir, "--head", f"--port={port}", "--include-dashboard=false")]
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(
            [str(Path(sys.executable).with_name("ray")), "status", f"--address={address}"], capture_output=True
        ).returncode:
            assert nodes[0].poll() is None and time.monotonic() < deadline, (
                Path(temp_dir) / f"ray-start-{HEAD_IP}.log"
            ).read_text()
            time.sleep(1)
        nodes.append(_ray_start(WORKER_IP, WORKER_SLOTS, temp_dir, f"--address={address}"))
        yield address
    finally:
        for node in reversed(nodes):  # the worker first: its drain needs the head's GCS
            _stop(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _graspfleet(*arguments: str, log: Path) -> subprocess.Popen[str]:
    """The graspfleet CLI in a child process, its output to ``log`` (a pipe could fill up)."""
    with log.open("w") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", *arguments], stdout=output, stderr=subprocess.STDOUT, text=True
        )


def test_actors_scale_2_to_6_to_1_on_two_nodes_while_the_learner_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    metrics_port = free_port()
    overrides = small_run_arguments(
        {
            "actors.count": 2,
            "operations.actor_resource": "sim_slot",
            "operations.reconcile_seconds": 0.5,
            "budget.seconds": 420,
        }
    )
    phases: list[dict[str, float]] = []
    """Each target count reached: the learner's updates then, the counts in the control plane and
    in the served metrics."""
    commands: list[subprocess.Popen[str]] = []
    update_times: list[float] = []
    """When the learner's update count was seen to grow."""
    with loopback_cluster(monkeypatch) as address:
        # the documented path: the driver joins the cluster; its Redis (with a generated password),
        # shards and /metrics bind the address Ray knows its node by, where the workers reach them
        driver = _graspfleet(
            "train", "--address", address, "--run-dir", str(run_dir),
            "--metrics-port", str(metrics_port), *overrides, log=tmp_path / "train.log",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not (run_dir / "control_plane.json").is_file():
                assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "train.log").read_text()
                time.sleep(0.5)
            redis_url = json.loads((run_dir / "control_plane.json").read_text())["redis_url"]
            assert redis_url.startswith("redis://:") and f"@{HEAD_IP}:" in redis_url  # off loopback: a password
            plane = ControlPlane(redis_url, "run")
            updates = 0.0
            for target, then in (
                (2, ("actors", "scale", "6")),
                (6, ("actors", "scale", "1", "--wait", "300")),
                (1, ("stop",)),
            ):
                while True:
                    assert driver.poll() is None, (tmp_path / "train.log").read_text()
                    seen = float(plane.state().get("updates", 0))
                    if seen > updates:
                        updates = seen
                        update_times.append(time.monotonic())
                    counts = plane.actor_counts("sim")
                    if (
                        counts["running"] == target
                        and not counts["draining"]
                        and updates > (phases[-1]["updates"] if phases else 0)
                    ):
                        break
                    time.sleep(0.25)
                served = urllib.request.urlopen(f"http://{HEAD_IP}:{metrics_port}/metrics", timeout=5).read().decode()
                targets = json.loads((tmp_path / "prometheus-targets" / "run.json").read_text())
                ray_nodes = next(len(g["targets"]) for g in targets if g["labels"]["component"] == "ray")
                phases.append(
                    {
                        "updates": updates,
                        "running": counts["running"] or 0,
                        "served": _gauge(served),
                        "nodes": ray_nodes,
                    }
                )
                commands.append(_graspfleet(*then, "--run-dir", str(run_dir), log=tmp_path / f"{then[-1]}.log"))
            driver.wait(300)
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    assert driver.returncode == 0, (tmp_path / "train.log").read_text()
    outputs = [(c.wait(60), (tmp_path / f"{c.args[-3]}.log").read_text()) for c in commands]
    assert all(code == 0 for code, _ in outputs), outputs
    assert "1 running of 1 desired" in outputs[1][1]  # `scale 1 --wait` saw the drain finish
    assert [p["running"] for p in phases] == [2, 6, 1] == [p["served"] for p in phases]  # graspfleet_actors_running
    assert all(p["nodes"] == 2 for p in phases)  # both nodes' metrics agents are Prometheus targets
    # the learner never stopped: it updated in every phase and was never silent for long
    assert max(b - a for a, b in itertools.pairwise(update_times)) < 60

    with RedisServer(directory=run_dir / "redis") as server:  # the run's AOF-persisted control plane
        events = ControlPlane(server.url, "run").events(count=10_000)
    started_ids = [e["actor"] for e in events if e["kind"] == "actor_started"]
    assert started_ids == [f"actor-{k}" for k in range(6)]  # 2, then 4 more
    nodes = {e["node"] for e in events if e["kind"] == "actor_running"}
    assert len(nodes) == 2  # six actors need both nodes' sim_slots
    drained = [e for e in events if e["kind"] == "actor_drained"]
    assert sorted(e["actor"] for e in drained) == started_ids  # 5 by `scale 1`, the last at the stop
    assert not [e for e in events if e["kind"] == "actor_drain_timeout"]
    # each flushed everything it appended, and the shards hold every step a writer acknowledged
    assert all(int(e["appended_steps"]) == int(e["accepted_steps"]) > 0 for e in drained)
    finished = next(e for e in events if e["kind"] == "run_finished")
    assert sum(int(e["accepted_steps"]) for e in drained) == int(finished["replay_inserted_steps"])
    assert float(finished["updates"]) > phases[-1]["updates"]
    assert [e["kind"] for e in events if e["kind"] in ("actors_scaled", "stop_requested")] == [
        "actors_scaled", "actors_scaled", "stop_requested",
    ]  # fmt: skip


def _gauge(served: str) -> float:
    line = next(x for x in served.splitlines() if x.startswith('graspfleet_actors_running{kind="sim"}'))
    return float(line.split()[-1])
