"""The run's simulation actors, reconciled to the desired count the control plane holds.

:class:`ActorFleet` is the driver's bookkeeping of its Ray actors. It keeps ``calls_in_flight``
``run`` calls queued per active actor (so an actor never idles while the driver updates), and
:meth:`ActorFleet.scale` moves the fleet towards a desired count:

- up: new actors start with fresh ids (``actor-7`` never reuses a drained actor's id, so its
  replay writers, metrics and weight-sync bookkeeping start clean);
- down: the newest actors **drain**: they get no new ``run`` calls; once the calls they have finish,
  ``close()`` flushes every trajectory step they appended to replay, and only then is the actor
  killed. A drain that cannot finish within ``close_timeout`` (its shard gone) is killed anyway and
  reported as such.

An actor is *running* once it has returned a report (a new actor may wait for resources, e.g. a
``sim_slot`` on a node the autoscaler has yet to add). :meth:`ActorFleet.poll` hands the driver
every finished report and every lifecycle change as :class:`FleetEvent`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import ray

ACTOR_FAILURES = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


@dataclasses.dataclass
class Member:
    actor_id: str
    handle: Any
    started: float
    running: bool = False
    """It has returned a report."""
    draining: bool = False
    closing: Any = None
    """The ``close()`` call of a drained actor."""
    drain_deadline: float = 0.0


@dataclasses.dataclass(frozen=True)
class FleetEvent:
    """``started`` / ``running`` / ``draining`` / ``drained`` / ``drain_failed`` / ``drain_timeout``,
    with details (``drained``: the steps the actor appended and the steps its shards accepted;
    ``drain_failed``: the error)."""

    kind: str
    actor_id: str
    fields: dict[str, int | float | str] = dataclasses.field(default_factory=dict)


class ActorFleet:
    """Actors made by ``start_actor(actor_id, index)``, each asked to ``run(steps_per_call)``."""

    def __init__(
        self,
        start_actor: Callable[[str, int], Any],
        steps_per_call: int,
        calls_in_flight: int = 2,
        close_timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.start_actor = start_actor
        self.steps_per_call = steps_per_call
        self.calls_in_flight = calls_in_flight
        self.close_timeout = close_timeout
        self.clock = clock
        self.members: dict[str, Member] = {}
        self.pending: dict[Any, str] = {}
        """run() call → actor id"""
        self.next_index = 0
        self.events: list[FleetEvent] = []

    # -- counts --------------------------------------------------------------------------------------

    @property
    def active(self) -> list[Member]:
        """Members not draining, oldest first."""
        return [m for m in self.members.values() if not m.draining]

    @property
    def running(self) -> int:
        return sum(m.running for m in self.active)

    @property
    def draining(self) -> int:
        return sum(m.draining for m in self.members.values())

    def running_ids(self) -> set[str]:
        return {m.actor_id for m in self.active if m.running}

    # -- reconciling ------------------------------------------------------------------------------

    def scale(self, desired: int) -> None:
        """Start or drain actors so that ``desired`` are active (running or starting)."""
        if desired < 0:
            raise ValueError(f"desired actor count: must be >= 0, got {desired}")
        active = self.active
        for _ in range(desired - len(active)):
            actor_id = f"actor-{self.next_index}"
            member = Member(actor_id, self.start_actor(actor_id, self.next_index), self.clock())
            self.next_index += 1
            self.members[actor_id] = member
            for _ in range(self.calls_in_flight):
                self._call(member)
            self.events.append(FleetEvent("started", actor_id))
        for member in reversed(active[desired:]):  # the newest drain first
            member.draining = True
            member.drain_deadline = self.clock() + self.close_timeout
            self.events.append(FleetEvent("draining", member.actor_id))

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """Collect finished ``run`` calls (re-queueing active actors' calls) and advance drains;
        returns ``(actor id, report)`` for each finished call."""
        reports = []
        if self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in ready:
                member = self.members[self.pending.pop(ref)]
                try:
                    report = ray.get(ref)
                except ACTOR_FAILURES:
                    report = None  # Ray restarts the actor (max_restarts=-1); ask again
                if report is not None:
                    reports.append((member.actor_id, report))
                    if not member.running:
                        member.running = True
                        waited = self.clock() - member.started
                        fields: dict[str, int | float | str] = {"seconds": waited, "node": str(report.get("node", ""))}
                        self.events.append(FleetEvent("running", member.actor_id, fields))
                if not member.draining:
                    self._call(member)
        self._advance_drains()
        return reports

    def take_events(self) -> list[FleetEvent]:
        events, self.events = self.events, []
        return events

    def _call(self, member: Member) -> None:
        self.pending[member.handle.run.remote(self.steps_per_call)] = member.actor_id

    def _calls_of(self, member: Member) -> int:
        return sum(1 for actor_id in self.pending.values() if actor_id == member.actor_id)

    def _advance_drains(self) -> None:
        for member in [m for m in self.members.values() if m.draining]:
            if member.closing is None and self._calls_of(member) == 0:
                member.closing = member.handle.close.remote(max(1.0, member.drain_deadline - self.clock()))
            if member.closing is not None and ray.wait([member.closing], timeout=0)[0]:
                try:
                    flushed = ray.get(member.closing)
                    event = FleetEvent("drained", member.actor_id, flushed)
                except ray.exceptions.RayError as exc:  # died, or its shard did not take the flush
                    event = FleetEvent("drain_failed", member.actor_id, {"error": str(exc).splitlines()[-1][:300]})
                self._remove(member)
                self.events.append(event)
            elif self.clock() > member.drain_deadline:
                self._remove(member)
                self.events.append(FleetEvent("drain_timeout", member.actor_id))

    def _remove(self, member: Member) -> None:
        for ref in [r for r, actor_id in self.pending.items() if actor_id == member.actor_id]:
            del self.pending[ref]
        ray.kill(member.handle)
        del self.members[member.actor_id]

    def kill_all(self) -> None:
        for member in list(self.members.values()):
            ray.kill(member.handle)
        self.members.clear()
        self.pending.clear()
