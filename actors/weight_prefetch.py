"""Announced weights fetched and decoded beside the actor's stepping, so a step only installs them.

Adopting a version used to take the step that saw its announcement three control-plane round
trips (the curriculum's tier, the latest version, the 1.5 MB blob) plus the decoding; with eight
actors sharing a core each of those waits for the scheduler, and in a measured run they added
0–350 ms to the slowest actor's adoption on top of its wait for a step boundary.
:class:`WeightPrefetcher` moves them to a thread: it blocks on the announcement channel, fetches
the announced version, decodes it (safetensors, never unpickling) into the encoder's and the
policy's state dicts, reads the curriculum's tier, and leaves the newest result in a one-slot
holder that the actor's next step takes. A failed fetch (Redis away, the version already gone)
is counted and leaves the holder as it was: the actor's periodic poll still finds the version.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, NamedTuple, Protocol

import torch

from learner.weights import deserialize, split_policy_tensors

if TYPE_CHECKING:
    from actors.sim_actor import TierSource, WeightSource

log = logging.getLogger(__name__)


class BlockingAnnouncements(Protocol):
    """Notices of new versions that can be waited on (``graspfleet.control_plane.WeightNotifications``)."""

    def wait(self, timeout: float) -> int | None:
        """The highest version announced within ``timeout`` seconds, or None."""
        ...

    def close(self) -> None: ...


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


class PrefetchedWeights(NamedTuple):
    weights: DecodedWeights
    tier: tuple[str, int] | None
    """The curriculum's (tier, generation) read right after the blob; None without a tier source."""


class WeightPrefetcher:
    """A daemon thread that turns announcements into decoded weights waiting for the next step."""

    def __init__(
        self,
        announcements: BlockingAnnouncements,
        weights: WeightSource,
        tiers: TierSource | None = None,
        wait_seconds: float = 0.5,
        retry_seconds: float = 1.0,
    ) -> None:
        """``wait_seconds``: longest block on the channel (how soon :meth:`close` is noticed);
        ``retry_seconds``: pause after a failed fetch."""
        self.announcements = announcements
        self.weights = weights
        self.tiers = tiers
        self.wait_seconds = wait_seconds
        self.retry_seconds = retry_seconds
        self.failures = 0
        """Announced versions that could not be fetched or decoded."""
        self._newest_fetched = -1
        self._ready: PrefetchedWeights | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="weight-prefetch", daemon=True)
        self._thread.start()

    @property
    def ready_version(self) -> int | None:
        """The version waiting to be taken, or None."""
        ready = self._ready
        return None if ready is None else ready.weights.version

    @property
    def alive(self) -> bool:
        """Whether the thread runs (until :meth:`close`: a failed fetch never ends it)."""
        return self._thread.is_alive()

    def take(self) -> PrefetchedWeights | None:
        """The newest prefetched version not taken yet (and empty the holder)."""
        with self._lock:
            ready, self._ready = self._ready, None
        return ready

    def _run(self) -> None:
        while not self._stop.is_set():
            announced = self.announcements.wait(self.wait_seconds)
            if announced is None or announced <= self._newest_fetched:
                continue
            try:
                fetched = self.weights.fetch_weights(announced)
                if fetched is None:
                    continue  # already dropped from the registry: the poll finds the latest
                decoded = decode_policy_weights(fetched[1])
                tier = self.tiers.curriculum_tier() if self.tiers is not None else None
            except Exception as error:  # a fetch must never end the thread: the poll still works
                self.failures += 1
                log.warning("prefetching weights version %d failed: %s", announced, error)
                self._stop.wait(self.retry_seconds)
                continue
            self._newest_fetched = decoded.version
            with self._lock:
                if self._ready is None or decoded.version > self._ready.weights.version:
                    self._ready = PrefetchedWeights(decoded, tier)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (it finishes the fetch under way, if any) and the subscription."""
        self._stop.set()
        self._thread.join(timeout)
        self.announcements.close()
