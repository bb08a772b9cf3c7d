"""Replay shard throughput against bare gRPC, measured in the same run.

Two workloads: small state transitions (64 float32 state + 8 action + reward + flags) and 32×32
RGB-D transitions (depth float32, rgb uint8, proprio, action, reward). For each:

- **insert**: chunks (``--small-chunk``/``--rgbd-chunk`` steps each), serialized beforehand,
  streamed into a real shard process over loopback with one ``InsertStream``; transitions/s and
  MB/s;
- **baseline**: the very same serialized bytes streamed to a bare ``grpc.aio`` sink in another
  process (client streaming, no decoding, no storage); MB/s;
- **sample**: batches of 256 transitions (with ``next_`` observations) streamed out of the shard
  by ``ReplaySampler``, against the same batch bytes streamed by a bare server (batches/s);
- **writer**: steps through ``ReplayWriter.append`` one at a time (the actor's path).

Prints one JSON object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `replay` package: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from graspfleet.ports import free_port  # noqa: E402
from replay.client import ReplaySampler, ReplayWriter, channel  # noqa: E402
from replay.process import ShardProcess  # noqa: E402
from replay.signature import ColumnSpec, Signature, encode  # noqa: E402
from replay.v1 import replay_pb2 as pb  # noqa: E402

SMALL = Signature(
    [
        ColumnSpec("state", "float32", (64,), observation=True),
        ColumnSpec("action", "float32", (8,)),
        ColumnSpec("reward", "float32", ()),
        ColumnSpec("terminated", "bool", ()),
    ]
)
RGBD = Signature(
    [
        ColumnSpec("depth", "float32", (32, 32), observation=True),
        ColumnSpec("rgb", "uint8", (32, 32, 3), observation=True),
        ColumnSpec("proprio", "float32", (14,), observation=True),
        ColumnSpec("action", "float32", (8,)),
        ColumnSpec("reward", "float32", ()),
        ColumnSpec("terminated", "bool", ()),
    ]
)
INSERT = f"/{pb.DESCRIPTOR.services_by_name['ReplayShardService'].full_name}/InsertStream"
SINK = "/graspfleet.bench.Baseline/Sink"
SOURCE = "/graspfleet.bench.Baseline/Source"
LIMIT = 64 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)]


def serve_baseline(port: int, batch_bytes: int) -> None:
    """A bare grpc.aio server: Sink counts a client stream's bytes, Source streams fixed batches."""

    async def sink(request_iterator, context):  # type: ignore[no-untyped-def]
        total = 0
        async for message in request_iterator:
            total += len(message)
        return total.to_bytes(8, "little")

    async def source(request, context):  # type: ignore[no-untyped-def]
        payload = os.urandom(int.from_bytes(request[:8], "little"))
        for _ in range(int.from_bytes(request[8:16], "little")):
            yield payload

    async def main() -> None:
        server = grpc.aio.server(options=OPTIONS)
        handlers = {
            "Sink": grpc.stream_unary_rpc_method_handler(sink),
            "Source": grpc.unary_stream_rpc_method_handler(source),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("graspfleet.bench.Baseline", handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        print("ready", flush=True)
        await server.wait_for_termination()

    asyncio.run(main())


def wait_ready(process: subprocess.Popen[str], marker: str) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if marker in line:
            return
    raise RuntimeError(f"server exited before printing {marker!r}")


def make_chunks(signature: Signature, steps: int, count: int, writer: str = "bench") -> list[pb.TrajectoryChunk]:
    rng = np.random.default_rng(0)
    columns = {}
    for c in signature.columns:
        if c.np_dtype.kind == "f":
            columns[c.name] = rng.normal(size=(steps, *c.shape)).astype(c.np_dtype)
        elif c.np_dtype.kind == "b":
            columns[c.name] = np.zeros((steps, *c.shape), dtype=c.np_dtype)
        else:
            columns[c.name] = rng.integers(0, 255, size=(steps, *c.shape)).astype(c.np_dtype)
    chunks = []
    for k in range(count):
        message = pb.TrajectoryChunk(
            writer_id=writer, sequence=k + 1, actor_id=writer, episode_id=0, step_offset=k * steps
        )
        for name, array in columns.items():
            encode(array, message.columns.add(name=name).tensor)
        chunks.append(message)
    return chunks


def measure(
    signature: Signature,
    chunk_steps: int,
    chunks: int,
    batch: int,
    batches: int,
    baseline: str,
    workdir: Path,
    writer_steps: int,
    repeats: int,
) -> dict[str, float]:
    steps = chunk_steps * chunks
    capacity = repeats * steps + writer_steps + 10
    shard = ShardProcess(free_port(), signature, workdir, ["--capacity", str(capacity), "--min-size", "1"])
    address = shard.address
    insert_seconds = baseline_seconds = float("inf")
    try:
        for r in range(repeats):  # alternate, keep the best of each: the machines are shared
            payloads = [m.SerializeToString() for m in make_chunks(signature, chunk_steps, chunks, f"bench{r}")]
            total_bytes = sum(len(p) for p in payloads)
            with channel(address) as ch:
                # The same pre-serialized bytes as the baseline, so neither side pays client encoding.
                insert = ch.stream_unary(INSERT, response_deserializer=pb.InsertSummary.FromString)
                start = time.perf_counter()
                summary = insert(iter(payloads), timeout=600)
                insert_seconds = min(insert_seconds, time.perf_counter() - start)
                assert summary.accepted_steps == steps, summary
            with grpc.insecure_channel(baseline, options=OPTIONS) as ch:
                sink = ch.stream_unary(SINK)
                start = time.perf_counter()
                received = int.from_bytes(sink(iter(payloads), timeout=600), "little")
                baseline_seconds = min(baseline_seconds, time.perf_counter() - start)
                assert received == total_bytes
        with ReplaySampler([address], batch_size=batch, prefetch=4) as sampler:
            first = sampler.sample()
            batch_bytes = sum(v.nbytes for v in first.columns.values())
            start = time.perf_counter()
            for _ in range(batches):
                sampler.sample()
            sample_seconds = time.perf_counter() - start
        with grpc.insecure_channel(baseline, options=OPTIONS) as ch:
            source = ch.unary_stream(SOURCE)
            start = time.perf_counter()
            request = batch_bytes.to_bytes(8, "little") + batches.to_bytes(8, "little")
            count = sum(1 for _ in source(request, timeout=600))
            source_seconds = time.perf_counter() - start
            assert count == batches
        step = {c.name: np.zeros(c.shape, c.np_dtype) for c in signature.columns}
        with ReplayWriter([address], "writer-bench", signature=signature, chunk_length=chunk_steps) as writer:
            start = time.perf_counter()
            for _ in range(writer_steps):
                writer.append(step)
            writer.flush()
            writer_seconds = time.perf_counter() - start
    finally:
        shard.stop()
    return {
        "step_bytes": signature.step_bytes,
        "chunk_steps": chunk_steps,
        "insert_transitions_per_s": steps / insert_seconds,
        "insert_mb_per_s": total_bytes / insert_seconds / 1e6,
        "baseline_grpc_mb_per_s": total_bytes / baseline_seconds / 1e6,
        "insert_vs_grpc": baseline_seconds / insert_seconds,
        "sample_batch": batch,
        "sample_batches_per_s": batches / sample_seconds,
        "sample_mb_per_s": batch_bytes * batches / sample_seconds / 1e6,
        "baseline_grpc_batches_per_s": batches / source_seconds,
        "sample_vs_grpc": source_seconds / sample_seconds,
        "writer_append_transitions_per_s": writer_steps / writer_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small-chunk", type=int, default=1000)
    parser.add_argument("--small-chunks", type=int, default=400)
    parser.add_argument("--rgbd-chunk", type=int, default=64)
    parser.add_argument("--rgbd-chunks", type=int, default=300)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serve-baseline", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline, 0)
        return
    port = free_port()
    baseline = subprocess.Popen(
        [sys.executable, __file__, "--serve-baseline", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_ready(baseline, "ready")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            small = measure(
                SMALL,
                args.small_chunk,
                args.small_chunks,
                256,
                args.batches,
                f"127.0.0.1:{port}",
                Path(tmp),
                writer_steps=50_000,
                repeats=args.repeats,
            )
            rgbd = measure(
                RGBD,
                args.rgbd_chunk,
                args.rgbd_chunks,
                256,
                args.batches,
                f"127.0.0.1:{port}",
                Path(tmp),
                writer_steps=5_000,
                repeats=args.repeats,
            )
    finally:
        baseline.terminate()
        baseline.wait(30)
    print(f"(best of {args.repeats} alternating insert/baseline runs)")
    for name, r in (("small", small), ("rgbd", rgbd)):
        print(
            f"{name}: insert {r['insert_transitions_per_s']:,.0f} transitions/s = {r['insert_mb_per_s']:.0f} MB/s "
            f"({r['insert_vs_grpc']:.2f} of bare gRPC's {r['baseline_grpc_mb_per_s']:.0f} MB/s); "
            f"sample {r['sample_batches_per_s']:,.0f} batches/s of {r['sample_batch']} "
            f"({r['sample_vs_grpc']:.2f} of bare gRPC); writer.append {r['writer_append_transitions_per_s']:,.0f}/s"
        )
    rounded = {k: {m: round(v, 3) for m, v in r.items()} for k, r in (("small", small), ("rgbd", rgbd))}
    print(json.dumps({"benchmark": "replay", "repeats": args.repeats, **rounded}))


if __name__ == "__main__":
    main()
