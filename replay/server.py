"""The replay shard: a ``grpc.aio`` server around one :class:`~replay.table.ReplayTable`.

The servicer only decodes, waits on the rate limiter and calls the table; the table does the
work. One event loop owns the table, so table operations never interleave; checkpoints copy
the index on the loop and write columns from a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from replay import checkpoint
from replay.config import ShardConfig
from replay.metrics import ShardMetrics
from replay.rate_limiter import RateLimiter
from replay.signature import InvalidChunk, Signature, decode, encode
from replay.table import DecodedChunk, NotEnoughData, ReplayTable, SequenceGap
from replay.v1 import replay_pb2 as pb
from replay.v1 import replay_pb2_grpc as pb_grpc

log = logging.getLogger("graspfleet.replay")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ReplayShardService"].full_name
ACCEPTED_SEQUENCE_KEY = "graspfleet-accepted-sequence"
WRITER_ID_KEY = "graspfleet-writer-id"
DRAIN_KEY = "graspfleet-drain"
"""Metadata of a writer's last flush before it stops: from then on its chunks pass the rate limiter
(they are few, bounded by its pending window), so stopping an actor waits for the network, not
for the learner to catch up."""
_KINDS = {pb.SAMPLE_KIND_TRANSITION: "transition", pb.SAMPLE_KIND_SEQUENCE: "sequence"}


def decode_chunk(chunk: pb.TrajectoryChunk) -> DecodedChunk:
    """Decode a chunk's tensors (zero-copy views); malformed tensors raise InvalidChunk."""
    columns: dict[str, np.ndarray] = {}
    for column in chunk.columns:
        if column.name in columns:
            raise InvalidChunk(f"columns: column {column.name!r} appears twice")
        columns[column.name] = decode(column.tensor, f"columns[{column.name}]")
    priorities = np.asarray(chunk.priorities, dtype=np.float64) if len(chunk.priorities) else None
    return DecodedChunk(
        writer_id=chunk.writer_id,
        sequence=int(chunk.sequence),
        actor_id=chunk.actor_id,
        episode_id=int(chunk.episode_id),
        step_offset=int(chunk.step_offset),
        tier=int(chunk.tier),
        policy_version=int(chunk.policy_version),
        columns=columns,
        priorities=priorities,
        end_of_episode=chunk.end_of_episode,
        resume=chunk.resume,
    )


def _field_of(message: str) -> str:
    return message.split(":", 1)[0].split("[", 1)[0].split(".", 1)[0] or "chunk"


class ReplayShard(pb_grpc.ReplayShardServiceServicer):
    """Servicer + owner of the table, rate limiter, metrics and checkpoints."""

    def __init__(
        self,
        signature: Signature,
        config: ShardConfig,
        checkpoint_dir: Path | None = None,
        metrics: ShardMetrics | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.table = ReplayTable(signature, config, seed=seed)
        self.limiter = RateLimiter(config)
        self.metrics = metrics or ShardMetrics()
        self.checkpoint_dir = checkpoint_dir
        self.durable: dict[str, int] = {}
        self.checkpoints = 0
        self.restored_steps = 0
        self.blocked = {"insert": 0.0, "sample": 0.0}
        self.draining: set[str] = set()
        """Writers that announced their last flush."""
        self.changed = asyncio.Condition()
        self._checkpoint_lock = asyncio.Lock()
        self._evictions_reported = 0
        self._gauges_at = 0.0
        self.metrics.capacity.set(config.capacity)
        if checkpoint_dir is not None and checkpoint.exists(checkpoint_dir):
            self.restored_steps = checkpoint.restore(checkpoint_dir, self.table)
            self.limiter.record_insert(self.table.inserted_steps)
            self.limiter.record_sample(self.table.sampled_items)
            self.durable = dict(self.table.writers)
            self._evictions_reported = self.table.evicted_steps
            self.metrics.restored.set(self.restored_steps)
            log.info("restored %d steps from %s", self.restored_steps, checkpoint_dir)
        self._update_gauges()

    # -- helpers ----------------------------------------------------------------------------------

    def _report_evictions(self) -> None:
        new = self.table.evicted_steps - self._evictions_reported
        if new > 0:
            self.metrics.evicted.inc(new)
            self._evictions_reported = self.table.evicted_steps

    def _update_gauges(self, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self._gauges_at < 0.25:
            return
        self._gauges_at = now
        t = self.table
        self.metrics.items.set(t.size)
        self.metrics.bytes.set(t.bytes)
        for tier in np.flatnonzero(t.tier_count):
            self.metrics.tier_items.labels(tier=str(tier)).set(int(t.tier_count[tier]))

    async def _wait(self, side: str, allowed: Callable[[], bool]) -> None:
        """Wait until ``allowed()`` (the rate limiter's verdict) holds, counting the time blocked."""
        if allowed():
            return
        start = time.perf_counter()
        async with self.changed:
            await self.changed.wait_for(allowed)
        waited = time.perf_counter() - start
        self.blocked[side] += waited
        self.metrics.blocked.labels(side=side).inc(waited)

    def _may_insert(self, writer: str) -> bool:
        return writer in self.draining or self.limiter.can_insert()

    async def _notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # -- RPCs -----------------------------------------------------------------------------------------

    async def InsertStream(
        self, request_iterator: AsyncIterator[pb.TrajectoryChunk], context: grpc.aio.ServicerContext
    ) -> pb.InsertSummary:
        metadata = dict(context.invocation_metadata() or ())
        writer = metadata.get(WRITER_ID_KEY, "")
        if writer and metadata.get(DRAIN_KEY):
            self.draining.add(writer)
            await self._notify()  # its stream waiting on the limiter goes on
        accepted = steps = duplicates = 0
        async for message in request_iterator:
            writer = writer or message.writer_id
            try:
                chunk = decode_chunk(message)
                await self._wait("insert", functools.partial(self._may_insert, writer))
                result = self.table.insert(chunk)
            except InvalidChunk as exc:
                self.metrics.rejected.labels(field=_field_of(str(exc))).inc()
                context.set_trailing_metadata(
                    ((ACCEPTED_SEQUENCE_KEY, str(self.table.accepted_sequence(message.writer_id))),)
                )
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"chunk {message.sequence}: {exc}")
                raise AssertionError("unreachable") from exc  # abort raises
            except SequenceGap as exc:
                context.set_trailing_metadata(((ACCEPTED_SEQUENCE_KEY, str(exc.expected - 1)),))
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                raise AssertionError("unreachable") from exc
            if result.duplicate:
                duplicates += 1
                self.metrics.duplicates.inc()
                continue
            accepted += 1
            steps += result.steps
            self.limiter.record_insert(result.steps)
            self.metrics.inserted.inc(result.steps)
            self.metrics.inserted_chunks.inc()
            self._update_gauges(throttle=True)
            await self._notify()
        self._report_evictions()
        self._update_gauges()
        return pb.InsertSummary(
            accepted_chunks=accepted,
            accepted_steps=steps,
            duplicate_chunks=duplicates,
            accepted_sequence=self.table.accepted_sequence(writer),
            durable_sequence=self.durable.get(writer, 0),
            checkpointing=self.checkpoint_dir is not None,
        )

    async def Sample(
        self, request: pb.SampleRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SampledBatch]:
        kind = _KINDS.get(request.kind)
        length = int(request.sequence_length) if kind == "sequence" else 1
        if request.batch_size == 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "batch_size: must be >= 1")
        if kind is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"kind: unknown sample kind {request.kind}")
        if kind == "sequence" and (length < 1 or request.burn_in >= length):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"sequence_length/burn_in: need sequence_length >= 1 and burn_in < sequence_length, "
                f"got {length} and {request.burn_in}",
            )
        n_step = max(1, int(request.n_step))
        if n_step > 1:
            try:
                self.table.check_n_step(n_step, str(kind))
            except ValueError as exc:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        bad = [t for t in request.tiers if not 0 <= t < self.config.max_tiers]
        if bad:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"tiers: {bad[0]} is outside [0, {self.config.max_tiers})"
            )
        tiers = list(request.tiers) or None
        sent = 0
        while request.num_batches == 0 or sent < request.num_batches:
            await self._wait("sample", self.limiter.can_sample)
            try:
                result = self.table.sample(int(request.batch_size), kind, length, tiers, n_step)  # type: ignore[arg-type]
            except NotEnoughData:
                async with self.changed:
                    await self.changed.wait()
                continue
            self.limiter.record_sample(int(request.batch_size))
            self.metrics.sampled.inc(int(request.batch_size))
            self.metrics.sampled_batches.inc()
            await self._notify()
            batch = pb.SampledBatch(
                keys=result.keys.tolist(),
                probabilities=result.probabilities.tolist(),
                weights=result.weights.tolist(),
                tiers=result.tiers.tolist(),
                policy_versions=result.policy_versions.tolist(),
                burn_in=int(request.burn_in) if kind == "sequence" else 0,
                table_size=self.table.size,
            )
            for name, array in result.columns.items():
                encode(array, batch.columns.add(name=name).tensor)
            if context.cancelled():
                return
            yield batch
            sent += 1

    async def UpdatePriorities(
        self, request: pb.PriorityUpdate, context: grpc.aio.ServicerContext
    ) -> pb.UpdatePrioritiesResponse:
        try:
            updated, stale = self.table.update_priorities(
                np.asarray(request.keys, dtype=np.uint64), np.asarray(request.priorities, dtype=np.float64)
            )
        except InvalidChunk as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from exc
        except ValueError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            raise AssertionError("unreachable") from exc
        self.metrics.priority_updates.inc(updated)
        return pb.UpdatePrioritiesResponse(updated=updated, stale=stale)

    async def Info(self, request: pb.InfoRequest, context: grpc.aio.ServicerContext) -> pb.ShardInfo:
        t = self.table
        return pb.ShardInfo(
            capacity=self.config.capacity,
            size=t.size,
            bytes=t.bytes,
            inserted_steps=t.inserted_steps,
            sampled_items=t.sampled_items,
            evicted_steps=t.evicted_steps,
            duplicate_chunks=t.duplicate_chunks,
            rejected_chunks=t.rejected_chunks,
            priority_updates=t.priority_updates,
            tier_counts={int(k): int(t.tier_count[k]) for k in np.flatnonzero(t.tier_count)},
            signature=[c.to_proto() for c in t.signature.columns],
            sampler=self.config.sampler,
            checkpoints=self.checkpoints,
            restored_steps=self.restored_steps,
            rate_limiter_insert_blocked_seconds=self.blocked["insert"],
            rate_limiter_sample_blocked_seconds=self.blocked["sample"],
            max_message_bytes=self.config.max_message_bytes,
        )

    # -- checkpoints ------------------------------------------------------------------------------

    async def checkpoint(self) -> checkpoint.CheckpointReport | None:
        """Take a checkpoint now (no-op without a checkpoint directory)."""
        if self.checkpoint_dir is None:
            return None
        async with self._checkpoint_lock:
            start = time.perf_counter()
            cut = checkpoint.capture(self.table)
            self.metrics.checkpoint_hold_seconds.observe(time.perf_counter() - start)
            report = await asyncio.to_thread(checkpoint.write, self.checkpoint_dir, self.table, cut)
        self.durable = report.writers
        self.checkpoints += 1
        self.metrics.checkpoints.inc()
        self.metrics.checkpoint_seconds.observe(report.seconds)
        self.metrics.checkpoint_written.inc(report.written_bytes)
        if report.torn_steps:
            self.metrics.torn.inc(report.torn_steps)
        return report

    async def checkpoint_periodically(self) -> None:
        if self.checkpoint_dir is None or self.config.checkpoint_interval <= 0:
            return
        while True:
            await asyncio.sleep(self.config.checkpoint_interval)
            try:
                await self.checkpoint()
            except Exception:  # a disk error or a bug: the shard keeps serving, and tries again next time
                self.metrics.checkpoint_failures.inc()
                log.exception("checkpoint to %s failed; the shard keeps serving", self.checkpoint_dir)


async def start_server(
    shard: ReplayShard, port: int = 0, host: str = "127.0.0.1"
) -> tuple[grpc.aio.Server, int, asyncio.Task[None]]:
    """Start the gRPC server (with health checking and reflection); returns it, the bound port
    and the periodic-checkpoint task."""
    limit = shard.config.max_message_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]
    )
    pb_grpc.add_ReplayShardServiceServicer_to_server(shard, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"could not bind {host}:{port}")
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    task = asyncio.create_task(shard.checkpoint_periodically())
    return server, bound, task


def serve(
    signature: Signature,
    config: ShardConfig,
    port: int,
    host: str = "127.0.0.1",
    checkpoint_dir: Path | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run a shard until SIGINT/SIGTERM, then take a final checkpoint and stop."""

    async def main() -> None:
        shard = ReplayShard(signature, config, checkpoint_dir)
        if metrics_port is not None:
            start_http_server(metrics_port, addr=host, registry=shard.metrics.registry)
        server, bound, task = await start_server(shard, port, host)
        log.info("replay shard serving on %s:%d (capacity %d)", host, bound, config.capacity)
        print(f"replay shard listening on {host}:{bound}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        task.cancel()
        await server.stop(grace=2.0)
        await shard.checkpoint()

    asyncio.run(main())
