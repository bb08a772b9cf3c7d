"""Shared helpers of the replay tests: a small signature and chunk builders."""

from __future__ import annotations

import numpy as np

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
