"""Shared helpers of the replay tests: a small signature, chunk builders and an in-process shard."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import grpc
import numpy as np

from replay.config import ShardConfig
from replay.server import ReplayShard, start_server
from replay.signature import ColumnSpec, Signature
from replay.table import DecodedChunk

SMALL = Signature(
    [
        ColumnSpec("obs", "float32", (3,), observation=True),
        ColumnSpec("step_id", "int64", ()),
        ColumnSpec("reward", "float32", ()),
    ]
)


def columns(first_id: int, steps: int, episode: int = 0) -> dict[str, np.ndarray]:
    ids = np.arange(first_id, first_id + steps, dtype=np.int64)
    obs = np.stack([ids, np.full(steps, episode), np.zeros(steps)], axis=1).astype(np.float32)
    return {"obs": obs, "step_id": ids, "reward": np.ones(steps, dtype=np.float32)}


def chunk(
    sequence: int,
    offset: int,
    steps: int,
    episode: int = 0,
    actor: str = "a",
    writer: str = "w",
    tier: int = 0,
    end: bool = False,
    first_id: int | None = None,
    priorities: np.ndarray | None = None,
) -> DecodedChunk:
    first = offset + 1000 * episode if first_id is None else first_id
    return DecodedChunk(
        writer, sequence, actor, episode, offset, tier, 7, columns(first, steps, episode), priorities, end
    )


class ShardThread:
    """A shard serving from a background thread's event loop, for tests and single-process runs."""

    def __init__(
        self, signature: Signature, config: ShardConfig, checkpoint_dir: Path | None = None, seed: int | None = 0
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="replay-shard")
        self.thread.start()

        async def start() -> tuple[ReplayShard, grpc.aio.Server, int, asyncio.Task[None]]:
            shard = ReplayShard(signature, config, checkpoint_dir, seed=seed)
            server, port, task = await start_server(shard)
            return shard, server, port, task

        self.shard, self.server, self.port, self._task = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, coro: object, timeout: float = 60) -> object:
        """Run a coroutine on the shard's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def stop(self) -> None:
        async def shutdown() -> None:
            self._task.cancel()
            await self.server.stop(grace=0.5)

        with contextlib.suppress(Exception):
            self.call(shutdown(), 30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
