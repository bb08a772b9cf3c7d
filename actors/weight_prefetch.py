"""Announced weights fetched, decoded and installed beside the actor's stepping.

:class:`WeightPrefetcher` runs on a thread of its own: it blocks on the announcement channel,
fetches the announced version, decodes it (safetensors, never unpickling) into the encoder's and
the policy's state dicts and hands them to the actor's ``install`` (``actors.sim_actor.ActingPolicy``
swaps them in between two inferences, without waiting for the next step), so no control-plane
round trip and no decoding happens on the stepping thread. The curriculum's tier, read right after
the version is in use, waits in a one-slot holder for the actor's next step, which switches the
cells. A failed fetch (Redis away, the version already gone) is counted; the actor's periodic poll
still finds the version.

The thread takes a niceness of its own (``operations.prefetch_niceness``, 0 by default; Linux keeps
niceness per thread): Ray runs actors at niceness 15, where a woken prefetch thread would queue
behind every actor's stepping thread on the core for its millisecond of work, and again for each
hand-over of the GIL. At 0 it runs as soon as its notice or blob arrives; it sleeps on the channel
the rest of the time, so the stepping threads lose nothing to it (the measurements are in
docs/experiments/2026-12-02-whole-system.md).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import NamedTuple

import torch

from graspfleet.interfaces import BlockingAnnouncements, TierSource, WeightSource
from graspfleet.weights import deserialize, split_policy_tensors

log = logging.getLogger(__name__)


class DecodedWeights(NamedTuple):
    """A published version as state dicts, ready for ``load_state_dict``."""

    version: int
    encoder: dict[str, torch.Tensor]
    policy: dict[str, torch.Tensor]


def decode_policy_weights(blob: bytes) -> DecodedWeights:
    """The version and the encoder's and policy's state dicts of a published blob."""
    weights = deserialize(blob)
    encoder, policy = split_policy_tensors(weights.tensors)
    return DecodedWeights(weights.version, encoder, policy)


def set_thread_niceness(native_id: int, niceness: int) -> bool:
    """Give the thread ``native_id`` ``niceness`` (−20 … 19; Linux, where it is per thread);
    returns whether it took: lowering it below the thread's needs CAP_SYS_NICE, and elsewhere than
    Linux it is not tried (the call would renice the whole process)."""
    if sys.platform != "linux":
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, native_id, niceness)
    except OSError:
        return False
    return True


class WeightPrefetcher:
    """A daemon thread that turns each announced version into the weights the actor acts with."""

    def __init__(
        self,
        announcements: BlockingAnnouncements,
        weights: WeightSource,
        install: Callable[[DecodedWeights], object],
        tiers: TierSource | None = None,
        wait_seconds: float = 0.5,
        retry_seconds: float = 1.0,
        niceness: int | None = None,
    ) -> None:
        """``install``: puts decoded weights in use (called on this thread; it ignores a version
        no newer than the one in use); ``wait_seconds``: longest block on the channel (how soon
        :meth:`close` is noticed); ``retry_seconds``: pause after a failed fetch; ``niceness``:
        the thread's own (see the module's docstring; None: the process's)."""
        self.announcements = announcements
        self.weights = weights
        self.install = install
        self.tiers = tiers
        self.wait_seconds = wait_seconds
        self.retry_seconds = retry_seconds
        self.failures = 0
        """Announced versions that could not be fetched, decoded or installed."""
        self.installed_version = -1
        """The newest version handed to ``install``."""
        self._tier: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="weight-prefetch", daemon=True)
        self._thread.start()
        # set from here, once the thread exists (start() returns with its native id known)
        native_id = self._thread.native_id
        if niceness is not None and (native_id is None or not set_thread_niceness(native_id, niceness)):
            # most non-root processes may not lower it: a note, not a warning on every actor's start
            log.info("weight prefetch thread: niceness %d not allowed here; it keeps the process's", niceness)

    @property
    def alive(self) -> bool:
        """Whether the thread runs (until :meth:`close`: a failed fetch never ends it)."""
        return self._thread.is_alive()

    @property
    def niceness(self) -> int | None:
        """The thread's niceness now (None once it ended, or off Linux)."""
        native_id = self._thread.native_id
        if sys.platform != "linux" or native_id is None or not self.alive:
            return None
        try:
            return os.getpriority(os.PRIO_PROCESS, native_id)
        except OSError:  # it ended in between
            return None

    def take_tier(self) -> tuple[str, int] | None:
        """The curriculum's (tier, generation) read with the newest installed version, once (None
        when none is waiting)."""
        with self._lock:
            tier, self._tier = self._tier, None
        return tier

    def _run(self) -> None:
        while not self._stop.is_set():
            announced = self.announcements.wait(self.wait_seconds)
            if announced is None or announced <= self.installed_version:
                continue
            try:
                fetched = self.weights.fetch_weights(announced)
                if fetched is None:
                    continue  # already dropped from the registry: the poll finds the latest
                decoded = decode_policy_weights(fetched[1])
                self.install(decoded)
                self.installed_version = decoded.version
                # read once the version is in use: its adoption waits for no further round trip
                tier = self.tiers.curriculum_tier() if self.tiers is not None else None
            except Exception as error:  # a fetch must never end the thread: the poll still works
                self.failures += 1
                log.warning("prefetching weights version %d failed: %s", announced, error)
                self._stop.wait(self.retry_seconds)
                continue
            if tier is not None:
                with self._lock:
                    self._tier = tier

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (it finishes the fetch under way, if any) and the subscription."""
        self._stop.set()
        self._thread.join(timeout)
        self.announcements.close()
