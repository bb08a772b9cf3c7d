"""`graspfleet train` as an operator runs it: a real process, SIGKILLed, resumed, then stopped with Ctrl-C.

Checks that a killed driver takes every process it started with it (Redis, shards, the local Ray
cluster, actors), that the next run on the same directory resumes the learner from its
checkpoint, and that SIGINT ends a run cleanly: exit status 130, checkpoint, policy and metrics
written, nothing left running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import small_run_arguments


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(name, state, parent pid) from /proc, None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]
    return name, state, int(ppid)


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[2]
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _start(run_dir: Path) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("graspfleet")), "train", "--run-dir", str(run_dir), "--shards", "1"]
    command += small_run_arguments()
    # a session of its own, like a job in a terminal: the signals below reach only its group
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_checkpoint(run: subprocess.Popen[bytes], run_dir: Path, updates: int) -> set[int]:
    """Wait until the learner checkpointed at least ``updates`` updates; returns the descendants seen."""
    descendants: set[int] = set()
    deadline = time.monotonic() + 180
    state = run_dir / "learner" / "state.json"
    while time.monotonic() < deadline:
        assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
        descendants |= _descendants(run.pid)
        try:
            if json.loads(state.read_text())["updates"] >= updates:
                return descendants
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.5)
    raise AssertionError("no checkpoint in time")


def _alive(pids: set[int]) -> list[str]:
    """``pid: name`` of those still running (zombies count as gone)."""
    return [f"{pid}: {stat[0]}" for pid in sorted(pids) if (stat := _stat(pid)) is not None and stat[1] != "Z"]


def _wait_gone(pids: set[int], seconds: float = 30) -> list[str]:
    deadline = time.monotonic() + seconds
    while (alive := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return alive


def test_a_killed_driver_leaves_nothing_behind_resumes_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _start(run_dir)
    descendants = _wait_for_checkpoint(first, run_dir, updates=20)
    names = " ".join(_alive(descendants))
    assert "redis-server" in names and "raylet" in names  # it really started its parts
    os.killpg(first.pid, signal.SIGKILL)  # the learner's process dies without any cleanup
    first.wait(timeout=30)
    assert _wait_gone(descendants - {first.pid}) == []  # no orphaned Redis, shard or Ray process
    killed_at = json.loads((run_dir / "learner" / "state.json").read_text())["updates"]

    second = _start(run_dir)
    descendants = _wait_for_checkpoint(second, run_dir, updates=killed_at + 10)  # resumed, not restarted
    os.killpg(second.pid, signal.SIGINT)  # Ctrl-C in the terminal
    output = second.communicate(timeout=90)[0].decode()
    assert second.returncode == 130, output
    assert "interrupted" in output
    assert _wait_gone(descendants) == []
    state = json.loads((run_dir / "learner" / "state.json").read_text())
    assert state["updates"] >= killed_at + 10  # the final checkpoint keeps everything it resumed to
    assert (run_dir / "policy.safetensors").is_file() and (run_dir / "metrics.csv").is_file()
    assert (run_dir / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    from orchestrator.control_plane import ControlPlane
    from orchestrator.redis_server import RedisServer

    with RedisServer(directory=run_dir / "redis") as server:  # the run's AOF-persisted control plane
        kinds = [e["kind"] for e in ControlPlane(server.url, "run").events()]
    assert "learner_resumed" in kinds and kinds[-1] == "interrupted"
