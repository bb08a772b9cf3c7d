"""The driver's watch over a run's replay shards: liveness, heartbeats and restarts.

Every ``interval`` seconds, on a thread of its own (the learner never waits on it), the supervisor
asks every shard of the run for its ``Info``. A shard that answers is heartbeated in the control
plane (``graspfleet status`` lists it as up); one that does not is reported down once, and up again
when it answers. A shard process the run started itself that has exited is started again on the
same port: it restores its last checkpoint, and the writers resend what it had accepted since
(they keep every chunk until a checkpoint holds it). Shards the run was given (``--replay``) are
only watched: whatever runs them (the Helm chart's StatefulSet) restarts them.

Events (``shard_down``, ``shard_up``, ``shard_restarted``, ``shard_restart_failed``) go to
``on_event``; the count of shards that answered and the restarts (by shard) to the gauge and
counter it is given (the learner's ``graspfleet_replay_shards_up`` and
``graspfleet_replay_shard_restarts_total``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import Counter, Gauge

from orchestrator.control_plane import ControlPlane
from replay.client import ReplayError, shard_info
from replay.process import ShardProcess

log = logging.getLogger(__name__)


class ShardSupervisor:
    """Probes, heartbeats and restarts a run's replay shards; a context manager (the thread)."""

    def __init__(
        self,
        addresses: Sequence[str],
        processes: Sequence[ShardProcess],
        plane: ControlPlane,
        shards_up: Gauge,
        restarts: Counter,
        on_event: Callable[[str, Mapping[str, str | int | float]], object],
        interval: float = 1.0,
        probe_timeout: float = 2.0,
    ) -> None:
        self.addresses = list(addresses)
        self.processes = {p.address: p for p in processes}
        """The shards this run started (and restarts), by address."""
        self.plane = plane
        self.on_event = on_event
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.down: set[str] = set()
        self.restart_backoff: dict[str, tuple[float, float]] = {}
        """A shard that would not start again: (the next try's time, the wait after it), doubling to a minute."""
        self.shards_up = shards_up
        self.restarts = restarts
        """by ``shard``"""
        self.shards_up.set(len(self.addresses))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="shard-supervisor")

    def __enter__(self) -> ShardSupervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # the control plane unreachable past its retries, say: next round
                log.exception("replay shard check failed")

    def check(self) -> None:
        """One round: restart the run's own shards that exited, probe every shard, heartbeat the
        ones that answered."""
        up = 0
        for address in self.addresses:
            process = self.processes.get(address)
            retry_at = self.restart_backoff.get(address, (0.0, 0.0))[0]
            if (
                process is not None
                and process.process.poll() is not None
                and time.monotonic() >= retry_at
                and not self._stop.is_set()
            ):
                self._restart(process)
            try:
                shard_info(address, timeout=self.probe_timeout)
            except ReplayError as exc:
                if address not in self.down:
                    self.down.add(address)
                    self.on_event("shard_down", {"shard": address, "error": str(exc)})
                continue
            up += 1
            self.plane.heartbeat_shard(address)
            if address in self.down:
                self.down.discard(address)
                self.on_event("shard_up", {"shard": address})
        self.shards_up.set(up)

    def _restart(self, process: ShardProcess) -> None:
        exit_code = process.process.returncode
        try:
            # (started from this thread, the new process gets its SIGTERM-with-parent when this
            # thread ends: at the end of the run, as the shards stop anyway)
            process.restart()
        except RuntimeError as exc:  # it would not start: tried again after a wait
            wait = min(2 * self.restart_backoff.get(process.address, (0.0, self.interval / 2))[1], 60.0)
            self.restart_backoff[process.address] = (time.monotonic() + wait, wait)
            fields = {"shard": process.address, "exit_code": exit_code, "error": str(exc), "retry_in_s": wait}
            self.on_event("shard_restart_failed", fields)
            return
        self.restart_backoff.pop(process.address, None)
        self.restarts.labels(shard=process.address).inc()
        try:
            restored = int(shard_info(process.address, timeout=self.probe_timeout).restored_steps)
        except ReplayError:
            restored = -1  # it went away again at once: this round's probe reports it down
        self.on_event("shard_restarted", {"shard": process.address, "exit_code": exit_code, "restored_steps": restored})
