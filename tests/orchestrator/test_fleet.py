"""The driver's actor fleet on a real local Ray cluster, with small stand-in actors (no simulator):
scaling up with fresh ids, draining the newest first only after their queued calls return, and
drains that fail or hang, and actors whose run raises."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from orchestrator.fleet import ACTOR_CONCURRENCY, ActorFailing, ActorFleet, FleetEvent

SIMULATED_FAULT = "cell 3: NaN in qpos after mj_step"


class Stepper:
    """Counts its run calls; close() reports them as the steps it flushed, and whether begin_drain
    reached it while a run call was under way. ``failing``: ``second_call`` raises on the second
    call of each process, ``always`` on every call; ``init`` raises in the constructor, and
    ``init_once:PATH`` does so while PATH exists, removing it."""

    def __init__(self, close_behaviour: str = "flush", failing: str = "") -> None:
        if failing == "init":
            raise ConnectionError(SIMULATED_FAULT)
        if failing.startswith("init_once:") and os.path.exists(marker := failing.removeprefix("init_once:")):
            os.remove(marker)
            raise ConnectionError(SIMULATED_FAULT)
        self.steps = 0
        self.calls = 0
        self.in_run = False
        self.drain_began_in_run = 0
        self.close_behaviour = close_behaviour
        self.failing = failing

    def run(self, steps: int) -> dict[str, Any]:
        self.in_run = True
        time.sleep(0.2)
        self.in_run = False
        self.calls += 1
        if self.failing == "always" or (self.failing == "second_call" and self.calls == 2):
            raise FloatingPointError(SIMULATED_FAULT)
        self.steps += steps
        return {"env_steps": steps, "pid": os.getpid(), "node": "node-a"}

    def begin_drain(self, timeout: float | None = None) -> None:
        self.drain_began_in_run = int(self.in_run)

    def close(self, timeout: float | None = None) -> dict[str, int]:
        if self.close_behaviour == "fail":
            raise RuntimeError("flush: shard did not accept 3 pending chunks in time")
        if self.close_behaviour == "hang":
            time.sleep(60)
        return {
            "appended_steps": self.steps,
            "accepted_steps": self.steps,
            "drain_began_in_run": self.drain_began_in_run,
        }


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _fleet(close_behaviour: str = "flush", close_timeout: float = 30.0) -> ActorFleet:
    remote: Any = ray.remote(num_cpus=0, concurrency_groups=ACTOR_CONCURRENCY)(Stepper)
    return ActorFleet(lambda actor_id, index: remote.remote(close_behaviour), 5, close_timeout=close_timeout)


def _poll_until(
    fleet: ActorFleet, done: Any, seconds: float = 60
) -> tuple[list[tuple[str, dict[str, Any]]], list[FleetEvent]]:
    reports: list[tuple[str, dict[str, Any]]] = []
    events: list[FleetEvent] = []
    deadline = time.monotonic() + seconds
    while not done(fleet, events):
        assert time.monotonic() < deadline, events
        reports += fleet.poll()
        events += fleet.take_events()
        time.sleep(0.01)
    return reports, events


def test_scaling_up_starts_fresh_ids_and_down_drains_the_newest_after_their_calls(local_ray: None) -> None:
    fleet = _fleet()
    try:
        fleet.scale(3)
        collected, events = _poll_until(fleet, lambda f, _: f.running == 3)
        assert [e.kind for e in events].count("started") == 3 and {a for a, _ in collected} == {
            "actor-0", "actor-1", "actor-2",
        }  # fmt: skip
        assert all(e.fields["node"] == "node-a" for e in events if e.kind == "running")
        fleet.scale(1)
        assert fleet.running == 1 and fleet.draining == 2  # draining ones no longer count as running
        assert [e.actor_id for e in fleet.take_events()] == ["actor-2", "actor-1"]  # newest first
        reports, events = _poll_until(fleet, lambda f, _: f.draining == 0)
        collected += reports
        drained = {e.actor_id: e.fields for e in events if e.kind == "drained"}
        assert set(drained) == {"actor-1", "actor-2"}
        # the flush came after every call the fleet handed out had returned: it holds all of them
        for actor_id, flushed in drained.items():
            steps = sum(report["env_steps"] for a, report in collected if a == actor_id)
            assert flushed["appended_steps"] == flushed["accepted_steps"] == steps > 0
            assert flushed["drain_began_in_run"] == 1  # told at once, beside the run call under way
        assert set(fleet.members) == {"actor-0"} and set(fleet.pending.values()) == {"actor-0"}
        fleet.scale(2)
        assert "actor-3" in fleet.members  # a new id, never a drained one's
        with pytest.raises(ValueError, match="must be >= 0"):
            fleet.scale(-1)
    finally:
        fleet.kill_all()


@pytest.mark.parametrize(("behaviour", "kind"), [("fail", "drain_failed"), ("hang", "drain_timeout")])
def test_a_drain_that_fails_or_hangs_still_ends_with_the_actor_gone(local_ray: None, behaviour: str, kind: str) -> None:
    fleet = _fleet(behaviour, close_timeout=3.0)
    try:
        fleet.scale(1)
        _poll_until(fleet, lambda f, _: f.running == 1)
        handle = fleet.members["actor-0"].handle
        fleet.scale(0)
        _, events = _poll_until(fleet, lambda f, _: not f.members)
        ended = [e for e in events if e.kind not in ("draining",)]
        assert [e.kind for e in ended] == [kind]
        if kind == "drain_failed":
            assert "did not accept 3 pending chunks" in str(ended[0].fields["error"])
        with pytest.raises(ray.exceptions.RayActorError):  # killed
            ray.get(handle.run.remote(1), timeout=30)
    finally:
        fleet.kill_all()


def _restartable_fleet(
    failing_first: str, failure_limit: int = 3, clock: Callable[[], float] = time.monotonic
) -> ActorFleet:
    """actor-0 fails as ``failing_first`` says, the others never; Ray restarts them as in a run."""
    remote: Any = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0, concurrency_groups=ACTOR_CONCURRENCY)(
        Stepper
    )
    return ActorFleet(
        lambda actor_id, index: remote.remote("flush", failing_first if index == 0 else ""),
        5,
        failure_limit=failure_limit,
        clock=clock,
    )


def _failures_until_the_fleet_stops(fleet: ActorFleet, seconds: float = 90) -> list[int]:
    """Poll until actor-0's failures stop the fleet with SIMULATED_FAULT; the ``recent_failures``
    of each ``failed`` event on the way."""
    events: list[FleetEvent] = []
    deadline = time.monotonic() + seconds
    with pytest.raises(ActorFailing, match=f"actor-0: failed 3 times within 600 s.*{SIMULATED_FAULT}"):
        while time.monotonic() < deadline:
            fleet.poll()
            events += fleet.take_events()
            time.sleep(0.01)
    events += fleet.take_events()
    return [int(e.fields["recent_failures"]) for e in events if e.kind == "failed"]


def test_an_actor_whose_run_raises_is_restarted_and_reports_again(local_ray: None) -> None:
    # each failure is further from the last than the window: none of them is recent
    failures_seen = [0]
    fleet = _restartable_fleet("second_call", failure_limit=2, clock=lambda: time.monotonic() + 1e4 * failures_seen[0])
    try:
        fleet.scale(2)
        pids: dict[str, set[int]] = {"actor-0": set(), "actor-1": set()}
        events: list[FleetEvent] = []
        deadline = time.monotonic() + 90
        while len(pids["actor-0"]) < 3:  # its first process, and two restarts that reported again
            assert time.monotonic() < deadline, events
            for actor_id, report in fleet.poll():
                pids[actor_id].add(report["pid"])
            events += fleet.take_events()
            failures_seen[0] = sum(e.kind == "failed" for e in events)
            time.sleep(0.01)
        failed = [e for e in events if e.kind == "failed"]
        assert len(failed) >= 2 and {e.actor_id for e in failed} == {"actor-0"}
        assert all(SIMULATED_FAULT in str(e.fields["error"]) for e in failed)
        assert all(e.fields["recent_failures"] == 1 for e in failed)  # so two (the limit) never stopped it
        assert len(pids["actor-1"]) == 1  # the healthy actor went on undisturbed
        assert fleet.running == 2 and sorted(fleet.pending.values()) == ["actor-0"] * 2 + ["actor-1"] * 2
    finally:
        fleet.kill_all()


def test_an_actor_that_fails_on_every_call_stops_the_fleet_with_its_error(local_ray: None) -> None:
    fleet = _restartable_fleet("always", failure_limit=3)
    try:
        fleet.scale(2)
        assert _failures_until_the_fleet_stops(fleet) == [1, 2, 3]
        with pytest.raises(ValueError, match="failure_limit"):
            ActorFleet(lambda actor_id, index: None, 5, failure_limit=0)
    finally:
        fleet.kill_all()


def test_an_actor_whose_constructor_raised_is_started_anew_and_a_lasting_fault_stops_the_fleet(
    local_ray: None, tmp_path: Path
) -> None:
    # Ray does not restart an actor whose constructor raised: every call to it fails at once
    marker = tmp_path / "fail-once"
    marker.touch()
    fleet = _restartable_fleet(f"init_once:{marker}")
    try:
        fleet.scale(2)
        reports, events = _poll_until(fleet, lambda f, _: f.running == 2)
        failed = [e for e in events if e.kind == "failed"]
        assert [(e.actor_id, e.fields["recent_failures"]) for e in failed] == [("actor-0", 1)]  # once, not per call
        assert SIMULATED_FAULT in str(failed[0].fields["error"])
        assert {actor_id for actor_id, _ in reports} == {"actor-0", "actor-1"}  # the new actor-0 reports
        assert sorted(fleet.pending.values()) == ["actor-0"] * 2 + ["actor-1"] * 2
    finally:
        fleet.kill_all()
    fleet = _restartable_fleet("init", failure_limit=3)
    try:
        fleet.scale(1)
        assert _failures_until_the_fleet_stops(fleet) == [1, 2, 3]
    finally:
        fleet.kill_all()
