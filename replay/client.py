"""Clients of the replay shards: a trajectory writer for actors and a batch sampler for the learner.

Both hide the gRPC stubs and map gRPC errors to this module's exceptions:
``INVALID_ARGUMENT`` → :class:`InvalidTrajectory`, ``UNAVAILABLE``/deadlines → retried (the
writer buffers, the sampler reconnects), anything else → :class:`ReplayError`.

**Writer.** An actor's steps are packed into chunks of ``chunk_length`` steps; a background
thread streams them to the actor's shard (chosen by consistent hashing of the actor id over
the shard addresses). Each chunk carries the writer's sequence number. The writer keeps every
chunk until the shard reports it *durable* (inside a completed checkpoint), so when a shard
restarts from its checkpoint, the writer sees the shard's accepted sequence fall behind and
resends what it lost; the shard drops duplicates. Chunks not yet accepted are never dropped:
when too many are pending, ``append`` blocks (backpressure). Accepted-but-not-durable chunks
beyond ``max_retained_bytes`` are released oldest first and counted (``unprotected_chunks``):
those, and only those, could be lost if the shard crashed before its next checkpoint. A shard that
takes no checkpoints says so in its summaries; its writers release chunks once accepted (nothing
would ever make them durable, and a restart of such a shard comes back empty).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import grpc
import numpy as np

from replay.chunker import Chunker, InvalidStep, SealedChunk
from replay.server import ACCEPTED_SEQUENCE_KEY, DRAIN_KEY, WRITER_ID_KEY
from replay.signature import ColumnSpec, Signature, decode, encode
from replay.table import SampleResult
from replay.v1 import replay_pb2 as pb
from replay.v1 import replay_pb2_grpc as pb_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ReplayError(RuntimeError):
    """A replay operation failed for a reason retrying will not fix."""


class InvalidTrajectory(ReplayError, ValueError):
    """The shard refused a chunk; the message names the field."""


class ReplayUnavailable(ReplayError):
    """No shard answered within the deadline."""


class ReplayBackpressure(ReplayError):
    """The writer's buffer stayed full for longer than the timeout (the shards are not keeping up)."""


def channel(address: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.Channel:
    """An insecure channel to a shard with the message size limits set."""
    return grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )


def _map_error(error: grpc.RpcError) -> ReplayError:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidTrajectory(details)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ReplayUnavailable(details)
    return ReplayError(f"{code}: {details}")


def _retriable(error: grpc.RpcError) -> bool:
    return error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


class HashRing:
    """Consistent hashing of keys onto shard addresses (``replicas`` virtual nodes each)."""

    def __init__(self, addresses: Sequence[str], replicas: int = 64) -> None:
        if not addresses:
            raise ValueError("a hash ring needs at least one shard address")
        points = sorted((self._hash(f"{a}#{i}"), a) for a in addresses for i in range(replicas))
        self._keys = [p for p, _ in points]
        self._nodes = [a for _, a in points]

    @staticmethod
    def _hash(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    def shard_for(self, key: str) -> str:
        i = bisect.bisect(self._keys, self._hash(key)) % len(self._keys)
        return self._nodes[i]

    def shards_from(self, key: str) -> list[str]:
        """Every shard once, in ring order from ``key``'s point (the first is :meth:`shard_for`):
        where a key's consecutive writers go, so an actor's cells spread over all the shards
        evenly instead of each landing where its own hash falls."""
        start = bisect.bisect(self._keys, self._hash(key))
        order: list[str] = []
        for j in range(len(self._nodes)):
            node = self._nodes[(start + j) % len(self._nodes)]
            if node not in order:
                order.append(node)
        return order


def shard_info(address: str, timeout: float = 10.0) -> pb.ShardInfo:
    """What a shard reports about itself: size, counters, signature."""
    with channel(address) as ch:
        try:
            return pb_grpc.ReplayShardServiceStub(ch).Info(pb.InfoRequest(), timeout=timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _map_error(exc) from None


def signature_of(info: pb.ShardInfo) -> Signature:
    """The table signature in a shard's ``Info``."""
    return Signature(ColumnSpec.from_proto(c) for c in info.signature)


def fetch_signature(address: str, timeout: float = 10.0) -> Signature:
    """The table signature a shard reports."""
    return signature_of(shard_info(address, timeout))


class _Chunk(NamedTuple):
    sequence: int
    message: pb.TrajectoryChunk
    size: int
    rows: int


class WriterStats(NamedTuple):
    appended_steps: int
    sent_chunks: int
    accepted_chunks: int
    accepted_steps: int
    resent_chunks: int
    unprotected_chunks: int
    durable_sequence: int
    accepted_sequence: int
    retained_chunks: int
    """Accepted chunks held to resend if the shard loses them (not yet durable)."""
    retained_bytes: int


class ReplayWriter:
    """Streams one actor's trajectories to its replay shard; a context manager.

    ``append(step)`` takes one step (a mapping with every signature column, per-step shapes);
    ``end_episode(final_observation, outcome)`` adds the final observation as the episode's last
    step (non-observation columns zero) and starts a new episode; ``flush()`` waits until every
    chunk so far is accepted by the shard.
    """

    def __init__(
        self,
        addresses: Sequence[str],
        actor_id: str,
        signature: Signature | None = None,
        chunk_length: int = 32,
        max_pending_chunks: int = 256,
        max_retained_bytes: int = 256 * 1024 * 1024,
        chunks_per_stream: int = 64,
        writer_id: str | None = None,
        timeout: float = 60.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if chunk_length < 1:
            raise ValueError(f"chunk_length: must be >= 1, got {chunk_length}")
        self.address = HashRing(addresses).shard_for(actor_id)
        self.actor_id = actor_id
        self.writer_id = writer_id or f"{actor_id}/{uuid.uuid4().hex[:12]}"
        self.signature = signature or fetch_signature(self.address)
        self.chunk_length = chunk_length
        self.max_pending_chunks = max_pending_chunks
        self.max_retained_bytes = max_retained_bytes
        self.chunks_per_stream = chunks_per_stream
        self._stream_chunks = chunks_per_stream
        """Chunks in the next insert stream: one after a stream ran out of time (a shard whose rate
        limiter admits slowly acknowledges nothing until a stream ends), doubling back after each
        stream that ends in time."""
        self.timeout = timeout
        self.tier = 0
        self.policy_version = 0
        self._chunker = Chunker(
            self.signature, chunk_length, self._seal, episode_id=int(uuid.uuid4().int & 0x7FFFFFFFFFFF)
        )
        self._sequence = itertools.count(1)
        self._pending: deque[_Chunk] = deque()
        self._retained: deque[_Chunk] = deque()
        self._retained_bytes = 0
        self._lock = threading.Condition()
        self._error: ReplayError | None = None
        self._closed = False
        self._drain = False
        self._sent = self._accepted = self._resent = self._unprotected = 0
        self._accepted_steps = 0
        self._accepted_sequence = 0
        self._durable_sequence = 0
        self._shard_checkpoints = True
        """Whether the shard said it takes checkpoints (until its first summary: assume so)."""
        self._restarts = 0
        self._channel = channel(self.address, max_message_bytes)
        self._stub = pb_grpc.ReplayShardServiceStub(self._channel)
        self._thread = threading.Thread(target=self._send_loop, daemon=True, name=f"replay-writer-{actor_id}")
        self._thread.start()

    # -- actor side --------------------------------------------------------------------------------

    def __enter__(self) -> ReplayWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, step: Mapping[str, Any]) -> None:
        """Add one step; every signature column must be present with its per-step shape."""
        self._raise_error()
        try:
            self._chunker.append(step)
        except InvalidStep as exc:
            raise InvalidTrajectory(str(exc)) from None

    def end_episode(self, final_observation: Mapping[str, Any], outcome: pb.EpisodeOutcome | None = None) -> None:
        """Close the episode with its final observation (the ``is_last`` step) and start another."""
        self._raise_error()
        try:
            self._chunker.end_episode(final_observation, outcome)
        except InvalidStep as exc:
            raise InvalidTrajectory(str(exc)) from None

    @property
    def episode_id(self) -> int:
        """The episode the next step belongs to."""
        return self._chunker.episode_id

    def flush(self, timeout: float | None = None) -> None:
        """Seal the partial chunk and wait until the shard has accepted everything so far.

        Also asks the shard what it holds, so chunks a restarted shard lost are resent even when
        nothing new is pending."""
        self._chunker.flush()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        synced = False
        while True:
            with self._lock:
                while self._pending and self._error is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ReplayUnavailable(
                            f"flush: shard {self.address} did not accept {len(self._pending)} pending chunks in time"
                        )
                    self._lock.wait(min(remaining, 0.1))
            self._raise_error()
            if synced:
                return
            synced = True
            try:
                summary = self._insert_stream([], max(deadline - time.monotonic(), 0.1))
            except grpc.RpcError as exc:
                raise _map_error(exc) from None
            with self._lock:
                self._shard_checkpoints = summary.checkpointing
                self._acknowledge(int(summary.accepted_sequence), int(summary.durable_sequence))
                if self._pending:
                    synced = False
                    self._lock.notify_all()

    def begin_drain(self, timeout: float | None = None) -> None:
        """This writer's actor is being stopped while the run goes on: from now on the shard admits
        its chunks past the rate limiter, and a stream of it waiting on the limiter goes on (a
        bounded overshoot: what the actor appends until it stops). Safe beside ``append`` on
        another thread."""
        if self._drain:
            return
        self._drain = True  # every stream from now on carries the drain flag
        try:
            # announce it now; a shard that is restarting gets until the timeout to come back
            self._insert_stream([], self.timeout if timeout is None else timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise _map_error(exc) from None

    def close(self, timeout: float | None = None, drain: bool = False) -> None:
        """Flush and stop the sender. ``drain``: :meth:`begin_drain` first."""
        if self._closed:
            return
        try:
            if drain:
                self.begin_drain(timeout)
            self.flush(timeout)
        finally:
            self._closed = True
            with self._lock:
                self._lock.notify_all()
            self._thread.join(5)
            self._channel.close()

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                self._chunker.appended,
                self._sent,
                self._accepted,
                self._accepted_steps,
                self._resent,
                self._unprotected,
                self._durable_sequence,
                self._accepted_sequence,
                len(self._retained),
                self._retained_bytes,
            )

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _seal(self, sealed: SealedChunk) -> None:
        """Encode a chunk the chunker sealed and queue it (waiting while ``max_pending_chunks`` are)."""
        sequence = next(self._sequence)
        message = pb.TrajectoryChunk(
            writer_id=self.writer_id,
            sequence=sequence,
            actor_id=self.actor_id,
            episode_id=sealed.episode_id,
            step_offset=sealed.step_offset,
            tier=self.tier,
            policy_version=self.policy_version,
            end_of_episode=sealed.end_of_episode,
        )
        if sealed.outcome is not None:
            message.outcome.CopyFrom(sealed.outcome)
        for name, column in sealed.columns.items():
            encode(column, message.columns.add(name=name).tensor)
        rows = len(next(iter(sealed.columns.values())))
        chunk = _Chunk(sequence, message, message.ByteSize(), rows)
        with self._lock:
            deadline = time.monotonic() + self.timeout
            while len(self._pending) >= self.max_pending_chunks and self._error is None:
                if time.monotonic() >= deadline:
                    raise ReplayBackpressure(
                        f"append: {len(self._pending)} chunks pending for shard {self.address} for {self.timeout} s"
                    )
                self._lock.wait(0.1)
            self._pending.append(chunk)
            self._lock.notify_all()

    # -- sender thread -------------------------------------------------------------------------------

    def _send_loop(self) -> None:
        backoff = 0.05
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait(0.5)
                if self._closed and not self._pending:
                    return
                batch = list(itertools.islice(self._pending, self._stream_chunks))
            try:
                # a quarter of the timeout: a stream the rate limiter holds up is cut short and
                # retried with one chunk before append() gives up waiting for room
                summary = self._insert_stream([c.message for c in batch], self.timeout / 4)
            except grpc.RpcError as exc:
                if _retriable(exc):
                    if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        self._stream_chunks = 1  # what it inserted comes back as duplicates, dropped
                    if self._closed:
                        return
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                accepted = _accepted_from(exc)
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and accepted is not None:
                    # The shard restarted from a checkpoint: resend what it no longer holds.
                    with self._lock:
                        self._acknowledge(accepted, durable=min(self._durable_sequence, accepted))
                        if self._pending and self._pending[0].sequence != accepted + 1:
                            self._pending[0].message.resume = True  # the chunks between are gone
                        self._lock.notify_all()
                    continue
                with self._lock:
                    self._sent += len(batch)
                    self._acknowledge(accepted or 0, durable=self._durable_sequence)
                    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and self._pending:
                        self._pending.popleft()  # the refused chunk cannot succeed on a retry
                    self._error = _map_error(exc)
                    self._lock.notify_all()
                continue
            backoff = 0.05
            self._stream_chunks = min(self.chunks_per_stream, 2 * self._stream_chunks)
            with self._lock:
                self._sent += len(batch)
                self._shard_checkpoints = summary.checkpointing
                self._acknowledge(int(summary.accepted_sequence), int(summary.durable_sequence))
                self._lock.notify_all()

    def _insert_stream(
        self, messages: list[pb.TrajectoryChunk], timeout: float, wait_for_ready: bool = False
    ) -> pb.InsertSummary:
        metadata = ((WRITER_ID_KEY, self.writer_id), *(((DRAIN_KEY, "1"),) if self._drain else ()))
        return self._stub.InsertStream(
            iter(messages), timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready
        )

    def _acknowledge(self, accepted: int, durable: int) -> None:
        """Apply a shard's view: move accepted chunks to retention, release durable ones, and
        resend what a restarted shard no longer holds. Call with the lock held."""
        if accepted < self._accepted_sequence:
            # The shard restarted from a checkpoint older than what it had accepted: resend.
            self._restarts += 1
            lost = [c for c in self._retained if c.sequence > accepted]
            self._retained = deque(c for c in self._retained if c.sequence <= accepted)
            self._retained_bytes = sum(c.size for c in self._retained)
            self._pending.extendleft(reversed(lost))
            self._resent += len(lost)
            self._accepted_steps -= sum(c.rows for c in lost)  # counted again when accepted again
        self._accepted_sequence = accepted
        self._durable_sequence = max(durable, 0)
        while self._pending and self._pending[0].sequence <= accepted:
            chunk = self._pending.popleft()
            self._accepted += 1
            self._accepted_steps += chunk.rows
            self._retained.append(chunk)
            self._retained_bytes += chunk.size
        if not self._shard_checkpoints:
            self._retained.clear()
            self._retained_bytes = 0
        while self._retained and self._retained[0].sequence <= self._durable_sequence:
            self._retained_bytes -= self._retained.popleft().size
        while self._retained and self._retained_bytes > self.max_retained_bytes:
            self._retained_bytes -= self._retained.popleft().size
            self._unprotected += 1


def _accepted_from(error: grpc.RpcError) -> int | None:
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in metadata or ():
        if key == ACCEPTED_SEQUENCE_KEY:
            return int(value)
    return None


def decode_batch(message: pb.SampledBatch, shard: str) -> SampleResult:
    return SampleResult(
        columns={c.name: decode(c.tensor, f"columns[{c.name}]") for c in message.columns},
        keys=np.asarray(message.keys, dtype=np.uint64),
        probabilities=np.asarray(message.probabilities),
        weights=np.asarray(message.weights, dtype=np.float32),
        tiers=np.asarray(message.tiers, dtype=np.int32),
        policy_versions=np.asarray(message.policy_versions, dtype=np.int64),
        burn_in=int(message.burn_in),
        shard=shard,
    )


class ReplaySampler:
    """Batches from K shards, fanned in, with ``prefetch`` batches decoded ahead; a context manager.

    One thread per shard keeps a server-streaming ``Sample`` call open and reconnects when
    the shard goes away; :meth:`sample` returns whichever shard's batch is ready first.
    """

    def __init__(
        self,
        addresses: Sequence[str],
        batch_size: int,
        kind: str = "transition",
        sequence_length: int = 1,
        burn_in: int = 0,
        tiers: Sequence[int] = (),
        prefetch: int = 4,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        n_step: int = 1,
    ) -> None:
        if kind not in ("transition", "sequence"):
            raise ValueError(f"kind: expected 'transition' or 'sequence', got {kind!r}")
        self.request = pb.SampleRequest(
            batch_size=batch_size,
            kind=pb.SAMPLE_KIND_TRANSITION if kind == "transition" else pb.SAMPLE_KIND_SEQUENCE,
            sequence_length=sequence_length,
            burn_in=burn_in,
            tiers=list(tiers),
            n_step=n_step,
        )
        self._queue: queue.Queue[SampleResult | ReplayError] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._channels = {a: channel(a, max_message_bytes) for a in addresses}
        self._calls: dict[str, Any] = {}
        self._threads = [
            threading.Thread(target=self._pump, args=(a,), daemon=True, name=f"replay-sampler-{a}") for a in addresses
        ]
        for t in self._threads:
            t.start()

    def __enter__(self) -> ReplaySampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[SampleResult]:
        while True:
            yield self.sample()

    def _pump(self, address: str) -> None:
        stub = pb_grpc.ReplayShardServiceStub(self._channels[address])
        backoff = 0.05
        while not self._stop.is_set():
            try:
                call = stub.Sample(self.request)
                self._calls[address] = call
                for message in call:
                    backoff = 0.05
                    batch = decode_batch(message, address)
                    while not self._stop.is_set():
                        try:
                            self._queue.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                if not _retriable(exc):
                    self._queue.put(_map_error(exc))
                    return
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def sample(self, timeout: float | None = 60.0) -> SampleResult:
        """The next batch from any shard; raises ReplayUnavailable after ``timeout`` seconds."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise ReplayUnavailable(f"no batch from {len(self._threads)} shards in {timeout} s") from None
        if isinstance(item, ReplayError):
            raise item
        return item

    def update_priorities(self, batch: SampleResult, priorities: np.ndarray, timeout: float = 10.0) -> int:
        """Send new priorities for a batch's rows to the shard it came from; returns rows updated."""
        stub = pb_grpc.ReplayShardServiceStub(self._channels[batch.shard])
        try:
            reply = stub.UpdatePriorities(
                pb.PriorityUpdate(
                    keys=batch.keys.tolist(), priorities=np.asarray(priorities, dtype=np.float64).tolist()
                ),
                timeout=timeout,
            )
        except grpc.RpcError as exc:
            raise _map_error(exc) from None
        return int(reply.updated)

    def close(self) -> None:
        self._stop.set()
        for call in self._calls.values():
            call.cancel()
        for t in self._threads:
            t.join(5)
        for ch in self._channels.values():
            ch.close()
