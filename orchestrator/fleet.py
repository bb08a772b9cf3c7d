"""The run's simulation actors, reconciled to the desired count the control plane holds.

:class:`ActorFleet` is the driver's bookkeeping of its Ray actors. It keeps ``calls_in_flight``
``run`` calls queued per active actor (so an actor never idles while the driver updates), and
:meth:`ActorFleet.scale` moves the fleet towards a desired count:

- up: new actors start with fresh ids (``actor-7`` never reuses a drained actor's id, so its
  replay writers, metrics and weight-sync bookkeeping start clean);
- down: the newest actors **drain**: ``begin_drain()`` tells them at once (a call in the
  :data:`CONTROL_GROUP` concurrency group, so it runs beside a ``run`` under way): their shards
  admit their chunks past the rate limiters from then on and their ``run`` calls return at the next
  step; they get no new ``run`` calls; once the calls they have return, ``close()`` flushes every
  trajectory step they appended to replay, and only then is the actor killed. A drain that cannot
  finish within ``close_timeout`` (its shard gone) is killed anyway and reported as such.

An actor is *running* once it has returned a report (a new actor may wait for resources, e.g. a
``sim_slot`` on a node the autoscaler has yet to add). :meth:`ActorFleet.poll` hands the driver
every finished report and every lifecycle change as :class:`FleetEvent`.

Failures: an actor whose process dies is restarted by Ray (``max_restarts=-1``) and asked again.
An actor whose ``run`` *raises* (its cells, writers or policy copy are then suspect) is killed and
restarted the same way; one whose constructor raised is dead for good (Ray does not restart it),
so a new one is started under the same id. Either is a ``failed`` event; a draining actor is
removed instead. Only when the same actor fails ``failure_limit`` times within ``failure_window``
seconds does :meth:`ActorFleet.poll` raise :class:`ActorFailing`: restarting it does not help, so
the run stops with the actor's error rather than restarting it forever. (Reports between the
failures do not excuse them: a fault that strikes a few steps after every restart — a writer its
shard refuses, a simulator that diverges — is as lasting as one that strikes at once.)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import ray

ACTOR_FAILURES = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)

CONTROL_GROUP = "control"
"""The concurrency group of an actor's control calls (``begin_drain``), which run beside its
``run`` calls: fleet actors are made remote with ``concurrency_groups=ACTOR_CONCURRENCY``."""
ACTOR_CONCURRENCY = {CONTROL_GROUP: 1}


class ActorFailing(RuntimeError):
    """An actor failed ``failure_limit`` times within ``failure_window`` seconds, restarted each time."""


def last_line(error: BaseException, limit: int = 300) -> str:
    """The line of a (Ray) error that says what went wrong: its traceback's last."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[-1][:limit]


@dataclasses.dataclass
class Member:
    actor_id: str
    index: int
    """What ``start_actor`` was given (seeds follow it)."""
    handle: Any
    started: float
    running: bool = False
    """It has returned a report."""
    draining: bool = False
    closing: Any = None
    """The ``close()`` call of a drained actor."""
    drain_deadline: float = 0.0
    failure_times: list[float] = dataclasses.field(default_factory=list)
    """When it failed (a ``run`` that raised, a constructor that raised), within the failure window."""


@dataclasses.dataclass(frozen=True)
class FleetEvent:
    """``started`` / ``running`` / ``failed`` / ``draining`` / ``drained`` / ``drain_failed`` /
    ``drain_timeout``, with details (``failed``: the error of the ``run`` call or constructor that
    raised and ``recent_failures``, the actor's failures within the window; it was restarted after
    it; ``drained``: the steps the actor appended and the steps its shards accepted;
    ``drain_failed``: the error)."""

    kind: str
    actor_id: str
    fields: dict[str, int | float | str] = dataclasses.field(default_factory=dict)


class ActorFleet:
    """Actors made by ``start_actor(actor_id, index)``, each asked to ``run(steps_per_call)``; a
    draining one to ``begin_drain(timeout)`` (in :data:`CONTROL_GROUP`) and then ``close(timeout)``."""

    def __init__(
        self,
        start_actor: Callable[[str, int], Any],
        steps_per_call: int,
        calls_in_flight: int = 2,
        close_timeout: float = 120.0,
        failure_limit: int = 3,
        failure_window: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_limit < 1:
            raise ValueError(f"failure_limit: must be >= 1, got {failure_limit}")
        if failure_window <= 0:
            raise ValueError(f"failure_window: must be > 0 s, got {failure_window}")
        self.start_actor = start_actor
        self.steps_per_call = steps_per_call
        self.calls_in_flight = calls_in_flight
        self.close_timeout = close_timeout
        self.failure_limit = failure_limit
        self.failure_window = failure_window
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
            member = Member(actor_id, self.next_index, self.start_actor(actor_id, self.next_index), self.clock())
            self.next_index += 1
            self.members[actor_id] = member
            for _ in range(self.calls_in_flight):
                self._call(member)
            self.events.append(FleetEvent("started", actor_id))
        for member in reversed(active[desired:]):  # the newest drain first
            member.draining = True
            member.drain_deadline = self.clock() + self.close_timeout
            # a failure here (the actor died, its shard is gone) shows in close()
            member.handle.begin_drain.options(concurrency_group=CONTROL_GROUP).remote(self.close_timeout)
            self.events.append(FleetEvent("draining", member.actor_id))

    def poll(self) -> list[tuple[str, dict[str, Any]]]:
        """Collect finished ``run`` calls (re-queueing active actors' calls), restart actors whose
        call or constructor raised, and advance drains; returns ``(actor id, report)`` for each
        finished call. Raises :class:`ActorFailing` when an actor failed ``failure_limit`` times in
        a row."""
        reports = []
        if self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in ready:
                if ref not in self.pending:  # a call of an actor removed earlier in this loop
                    continue
                member = self.members[self.pending.pop(ref)]
                try:
                    report = ray.get(ref)
                except ACTOR_FAILURES as error:
                    if getattr(error, "actor_init_failed", False):  # dead for good: Ray will not restart it
                        self._failed(member, error, replace=True)
                        continue
                    report = None  # Ray restarts the actor (max_restarts=-1); ask again
                except ray.exceptions.RayTaskError as error:
                    if not self._failed(member, error, replace=False):
                        continue
                    report = None
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

    def _failed(self, member: Member, error: ray.exceptions.RayError, replace: bool) -> bool:
        """``member``'s ``run`` or constructor raised ``error``. ``replace`` (its constructor: the
        handle is dead for good): start a new actor under its id with fresh calls; else restart its
        process (its other calls then fail and are asked again). A draining member is removed
        instead. Returns whether the caller should ask it again."""
        now = self.clock()
        member.failure_times = [t for t in member.failure_times if t > now - self.failure_window] + [now]
        message = last_line(error)
        if member.draining:
            self._remove(member)
            self.events.append(FleetEvent("drain_failed", member.actor_id, {"error": message}))
            return False
        recent = len(member.failure_times)
        self.events.append(FleetEvent("failed", member.actor_id, {"error": message, "recent_failures": recent}))
        if recent >= self.failure_limit:
            raise ActorFailing(
                f"{member.actor_id}: failed {recent} times within {self.failure_window:g} s, restarted after each; "
                f"the last error: {message}"
            ) from error
        if not replace:
            ray.kill(member.handle, no_restart=False)  # Ray starts a fresh process from the same arguments
            return True
        self._drop_calls(member)  # calls to the dead handle: each would fail the same way
        member.handle = self.start_actor(member.actor_id, member.index)
        member.started = self.clock()
        for _ in range(self.calls_in_flight):
            self._call(member)
        return False

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
                    event = FleetEvent("drain_failed", member.actor_id, {"error": last_line(exc)})
                self._remove(member)
                self.events.append(event)
            elif self.clock() > member.drain_deadline:
                self._remove(member)
                self.events.append(FleetEvent("drain_timeout", member.actor_id))

    def _drop_calls(self, member: Member) -> None:
        for ref in [r for r, actor_id in self.pending.items() if actor_id == member.actor_id]:
            del self.pending[ref]

    def _remove(self, member: Member) -> None:
        self._drop_calls(member)
        ray.kill(member.handle)
        del self.members[member.actor_id]

    def kill_all(self) -> None:
        for member in list(self.members.values()):
            ray.kill(member.handle)
        self.members.clear()
        self.pending.clear()
