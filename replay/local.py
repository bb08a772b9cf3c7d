"""An in-process trajectory sink: one cell's steps go straight into a :class:`ReplayTable`.

Serial training and the learner's demonstration buffer use it where the distributed system uses
:class:`replay.client.ReplayWriter`; both build their chunks with the same
:class:`replay.chunker.Chunker`, so the table cannot tell the difference.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from replay.chunker import Chunker, SealedChunk
from replay.table import DecodedChunk, ReplayTable


class TableSink:
    """One cell's trajectory sink that inserts chunks straight into an in-process table."""

    _writers = itertools.count()

    def __init__(self, table: ReplayTable, actor_id: str, chunk_length: int) -> None:
        self.table = table
        self.actor_id = actor_id
        self.writer_id = f"{actor_id}#{next(self._writers)}"
        self.tier = 0
        self.policy_version = 0
        self._sequence = itertools.count(1)
        self._chunker = Chunker(table.signature, chunk_length, self._insert)

    def _insert(self, chunk: SealedChunk) -> None:
        self.table.insert(
            DecodedChunk(
                self.writer_id,
                next(self._sequence),
                self.actor_id,
                chunk.episode_id,
                chunk.step_offset,
                self.tier,
                self.policy_version,
                {name: column.copy() for name, column in chunk.columns.items()},
                None,
                chunk.end_of_episode,
            )
        )

    def append(self, step: Mapping[str, Any]) -> None:
        self._chunker.append(step)

    def end_episode(self, final_observation: Mapping[str, Any]) -> None:
        self._chunker.end_episode(final_observation)

    def flush(self, timeout: float | None = None) -> None:
        self._chunker.flush()

    def close(self, timeout: float | None = None) -> None:
        self.flush()
