"""The control plane of a run, in Redis: weights registry, run state, shard registry, actor count.

Every key lives under ``graspfleet:{run}:``, so runs share a Redis without touching each other:

============================  ==================================================================
``weights:latest``            the newest published version (an integer)
``weights:{version}``         the safetensors blob of that version; every version is kept
                              (method.md §7: snapshot every model version for traceability)
``weights:published``         a hash: version → unix time of its publication
``weights:notify``            pub/sub channel announcing each new version (actors listen)
``state``                     a hash of the run's state (tier, status, learner step, …)
``shards``                    a hash: replay shard address → last heartbeat (unix seconds;
                              the driver's shard supervisor refreshes it while the shard answers)
``actors:desired:{kind}``     how many actors of a kind (``sim``, ``arm``) the run should have
``actors:{kind}``             a hash: how many of that kind are ``running`` and ``draining``
                              now (the driver writes it as it reconciles)
``stop``                      set by ``graspfleet stop``: the driver drains its actors,
                              checkpoints and ends the run (cleared when a run starts)
``events``                    a stream of run events (interruptions, …) for audit
``curriculum``                a hash: the current ``tier``, its ``generation`` and the
                              controller's full ``state`` (JSON); actors read the first two
``curriculum:events``         a stream: every promotion, rollback, regression, learning-rate
                              change and gate reset, with the metrics and weights versions
============================  ==================================================================

Redis commands that fail to connect are retried with exponential backoff; each retry is counted
(``reconnects``, and ``on_retry``) so metrics surface a flaky control plane
(``graspfleet_control_plane_retries_total`` for the driver, ``ray_graspfleet_actor_control_plane_retries_total``
for the actors). Nothing here is pickled: weights
are safetensors bytes, everything else strings and numbers.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import redis

T = TypeVar("T")

SHARD_HEARTBEAT_MAX_AGE = 30.0
"""Seconds after its last heartbeat that a replay shard counts as down."""

REPLY_READ_BYTES = 2**20
"""Bytes the client reads from its socket at a time (redis-py's default: 64 KiB). A 1.5 MB weights
blob took 23 reads, each giving up the GIL and waiting to take it back from a busy thread (an
actor's stepping): 72 ms a fetch beside one, against 16 ms with 1 MiB reads."""

_PUBLISH = """
local latest = tonumber(redis.call('GET', KEYS[1]) or '-1')
local version = tonumber(ARGV[1])
if version <= latest then return {0, latest} end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('PUBLISH', KEYS[4], ARGV[1])
return {1, version}
"""


class WeightNotifications:
    """Push notice of new weight versions (Redis pub/sub), waited on with a timeout (0: a read that
    never blocks).

    Pub/sub delivers at most once and drops messages while disconnected, so it only shortens the
    wait: actors still poll ``weights:latest`` every few steps, and a broken subscription is
    reopened on the next read.
    """

    def __init__(self, client: Any, channel: str, latest_key: str) -> None:
        """``latest_key``: the key holding the latest version, read when a subscription is reopened
        so that a version announced while it was broken is still reported."""
        self.client = client
        self.channel = channel
        self.latest_key = latest_key
        self.pubsub: Any = None
        self.reported = -1
        """The highest version a call has returned."""
        self.opened = False
        """Whether a subscription was ever opened (a later one is a reopening)."""

    def wait(self, timeout: float) -> int | None:
        """The highest version announced since the last call, waiting up to ``timeout`` seconds
        for one when none is there (0: not at all); None when none came. A broken subscription
        counts as none (after the timeout has passed) and is reopened at once, or by the next call
        while Redis is still away: a version published after the call that reopened it reaches it."""
        deadline = time.monotonic() + timeout
        try:
            missed = self._subscribe()
            if missed is not None:
                return self._report(missed)
            newest = None
            message = self.pubsub.get_message(timeout=timeout)
            while message is not None:
                if message.get("type") == "message":
                    version = int(message["data"])
                    newest = version if newest is None else max(newest, version)
                message = self.pubsub.get_message(timeout=0)
            return None if newest is None else self._report(newest)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.close()
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError):
                missed = self._subscribe()
                if missed is not None:
                    return self._report(missed)
            time.sleep(max(0.0, deadline - time.monotonic()))
            return None

    def _report(self, version: int) -> int:
        self.reported = max(self.reported, version)
        return version

    def _subscribe(self) -> int | None:
        """Open the subscription if it is not; after a broken one, the latest version when it is
        newer than any reported (announced while nobody listened), else None."""
        if self.pubsub is not None:
            return None
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        self.pubsub = pubsub  # set once subscribed: a publish after this reaches it
        if not self.opened:
            self.opened = True
            return None
        latest = self.client.get(self.latest_key)
        return int(latest) if latest is not None and int(latest) > self.reported else None

    def close(self) -> None:
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                self.pubsub.close()
            self.pubsub = None


class StaleWeights(ValueError):
    """A publish with a version not newer than the registry's latest."""


class ControlPlane:
    """One run's view of the control plane."""

    def __init__(
        self,
        url: str,
        run: str,
        retries: int = 8,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        socket_timeout: float = 5.0,
        on_retry: Callable[[], object] | None = None,
    ) -> None:
        """``on_retry``: called at each retry of a command (a metric's ``inc``), as ``reconnects`` counts."""
        if not run or ":" in run:
            raise ValueError(f"run: must be a non-empty name without ':', got {run!r}")
        self.run = run
        self.prefix = f"graspfleet:{run}:"
        # redis-py's return annotations mix in its async client's; treat replies as plain values.
        self.client: Any = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            socket_read_size=REPLY_READ_BYTES,
        )
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.reconnects = 0
        self.on_retry = on_retry
        self._publish = self.client.register_script(_PUBLISH)

    def key(self, name: str) -> str:
        return self.prefix + name

    def _call(self, operation: Callable[[], T]) -> T:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return operation()
            except (redis.ConnectionError, redis.TimeoutError):
                if attempt == self.retries:
                    raise
                self.reconnects += 1
                if self.on_retry is not None:
                    self.on_retry()
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        return bool(self._call(self.client.ping))

    # -- weights ---------------------------------------------------------------------------------

    def publish_weights(self, version: int, blob: bytes) -> None:
        """Store ``blob`` as ``version`` and make it the latest; refuses a version not newer."""
        accepted, latest = self._call(
            lambda: self._publish(
                keys=[
                    self.key("weights:latest"),
                    self.key(f"weights:{version}"),
                    self.key("weights:published"),
                    self.key("weights:notify"),
                ],
                args=[version, blob, f"{time.time():.6f}"],
            )
        )
        if not accepted:
            raise StaleWeights(f"weights: version {version} is not newer than the published {latest}")

    def latest_version(self) -> int:
        """The newest published version, or −1 (one cheap GET: actors poll it)."""
        value = self._call(lambda: self.client.get(self.key("weights:latest")))
        return int(value) if value is not None else -1

    def fetch_weights(self, version: int | None = None) -> tuple[int, bytes] | None:
        """The blob of ``version`` (default: the latest), or None when there is none."""
        if version is None:
            version = self.latest_version()
            if version < 0:
                return None
        blob = self._call(lambda: self.client.get(self.key(f"weights:{version}")))
        return None if blob is None else (version, bytes(blob))

    def published_at(self) -> dict[int, float]:
        """Version → unix time it was published."""
        raw = self._call(lambda: self.client.hgetall(self.key("weights:published")))
        return {int(k): float(v) for k, v in raw.items()}

    def weight_notifications(self) -> WeightNotifications:
        """A subscription to new-version announcements (see :class:`WeightNotifications`)."""
        return WeightNotifications(self.client, self.key("weights:notify"), self.key("weights:latest"))

    def weight_versions(self) -> list[int]:
        """Every stored version, ascending."""
        keys = self._call(lambda: list(self.client.scan_iter(match=self.key("weights:*"), count=1000)))
        versions = []
        for key in keys:
            suffix = key.decode().rsplit(":", 1)[1]
            if suffix.isdigit():  # not latest, published or notify
                versions.append(int(suffix))
        return sorted(versions)

    # -- state -------------------------------------------------------------------------------------

    def set_state(self, **fields: str | int | float) -> None:
        mapping = {k: str(v) for k, v in fields.items()}
        self._call(lambda: self.client.hset(self.key("state"), mapping=mapping))

    def state(self) -> dict[str, str]:
        raw = self._call(lambda: self.client.hgetall(self.key("state")))
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- shards ------------------------------------------------------------------------------------

    def heartbeat_shard(self, address: str, now: float | None = None) -> None:
        """Register or refresh a replay shard."""
        stamp = time.time() if now is None else now
        self._call(lambda: self.client.hset(self.key("shards"), address, f"{stamp:.3f}"))

    def shard_heartbeat_ages(self, now: float | None = None) -> dict[str, float]:
        """Seconds since each registered shard's last heartbeat, by address (sorted)."""
        current = time.time() if now is None else now
        raw = self._call(lambda: self.client.hgetall(self.key("shards")))
        return {k.decode(): current - float(v) for k, v in sorted(raw.items())}

    def shards(self, max_age: float = SHARD_HEARTBEAT_MAX_AGE, now: float | None = None) -> list[str]:
        """Shards whose heartbeat is at most ``max_age`` seconds old, sorted."""
        return [address for address, age in self.shard_heartbeat_ages(now).items() if age <= max_age]

    def remove_shard(self, address: str) -> None:
        self._call(lambda: self.client.hdel(self.key("shards"), address))

    # -- actors ------------------------------------------------------------------------------------

    def set_desired_actors(self, count: int, kind: str = "sim") -> None:
        if count < 0:
            raise ValueError(f"desired actor count: must be >= 0, got {count}")
        self._call(lambda: self.client.set(self.key(f"actors:desired:{kind}"), count))

    def desired_actors(self, kind: str = "sim") -> int | None:
        value = self._call(lambda: self.client.get(self.key(f"actors:desired:{kind}")))
        return None if value is None else int(value)

    def set_actor_counts(self, running: int, draining: int, kind: str = "sim") -> None:
        mapping = {"running": running, "draining": draining}
        self._call(lambda: self.client.hset(self.key(f"actors:{kind}"), mapping=mapping))

    def actor_counts(self, kind: str = "sim") -> dict[str, int | None]:
        """``desired``, ``running`` and ``draining`` actors of ``kind`` (None: never set)."""
        running, draining = self._call(lambda: self.client.hmget(self.key(f"actors:{kind}"), "running", "draining"))
        return {
            "desired": self.desired_actors(kind),
            "running": None if running is None else int(running),
            "draining": None if draining is None else int(draining),
        }

    def request_stop(self) -> None:
        self._call(lambda: self.client.set(self.key("stop"), f"{time.time():.3f}"))

    def stop_requested(self) -> bool:
        return bool(self._call(lambda: self.client.exists(self.key("stop"))))

    def clear_stop(self) -> None:
        self._call(lambda: self.client.delete(self.key("stop")))

    # -- curriculum --------------------------------------------------------------------------------

    def set_curriculum(self, tier: str, generation: int, state: Mapping[str, Any]) -> None:
        """Publish the curriculum's tier (actors switch to it at their next version check)."""
        mapping = {"tier": tier, "generation": str(generation), "state": json.dumps(state)}
        self._call(lambda: self.client.hset(self.key("curriculum"), mapping=mapping))

    def curriculum_tier(self) -> tuple[str, int] | None:
        """(tier, generation), or None before a curriculum has published one."""
        tier, generation = self._call(lambda: self.client.hmget(self.key("curriculum"), "tier", "generation"))
        return None if tier is None or generation is None else (tier.decode(), int(generation))

    def curriculum_state(self) -> dict[str, Any] | None:
        raw = self._call(lambda: self.client.hget(self.key("curriculum"), "state"))
        return None if raw is None else dict(json.loads(raw))

    # -- events ------------------------------------------------------------------------------------

    def append_event(self, kind: str, fields: Mapping[str, str | int | float], stream: str = "events") -> str:
        """Append an audit event to ``stream`` (``events`` or ``curriculum:events``); returns its id."""
        reserved = {"kind", "time"} & fields.keys()
        if reserved:
            raise ValueError(f"event {kind}: field names {sorted(reserved)} are the event's own")
        entry = {"kind": kind, "time": f"{time.time():.3f}", **{k: str(v) for k, v in fields.items()}}
        return str(self._call(lambda: self.client.xadd(self.key(stream), entry)).decode())

    def events(self, count: int = 1000, stream: str = "events") -> list[dict[str, str]]:
        raw = self._call(lambda: self.client.xrange(self.key(stream), count=count))
        return [{"id": i.decode(), **{k.decode(): v.decode() for k, v in e.items()}} for i, e in raw]

    def close(self) -> None:
        self.client.close()
