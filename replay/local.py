"""An in-process trajectory sink: one cell's steps go straight into a :class:`ReplayTable`.

Serial training and the learner's demonstration buffer use it where the distributed system uses
:class:`replay.client.ReplayWriter`; it builds the same chunks (contiguous sequences, episode
offsets, the final observation as an extra row) so the table cannot tell the difference.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from replay.table import DecodedChunk, ReplayTable


class TableSink:
    """One cell's trajectory sink that inserts chunks straight into an in-process table."""

    _writers = itertools.count()

    def __init__(self, table: ReplayTable, actor_id: str, chunk_length: int) -> None:
        self.table = table
        self.actor_id = actor_id
        self.writer_id = f"{actor_id}#{next(self._writers)}"
        self.chunk_length = chunk_length
        self.tier = 0
        self.policy_version = 0
        self._rows: list[dict[str, Any]] = []
        self._sequence = 0
        self._episode = 0
        self._offset = 0

    def _seal(self, end_of_episode: bool) -> None:
        self._sequence += 1
        columns = {
            c.name: np.stack([np.asarray(r[c.name], dtype=c.np_dtype) for r in self._rows])
            for c in self.table.signature.columns
        }
        self.table.insert(
            DecodedChunk(
                self.writer_id,
                self._sequence,
                self.actor_id,
                self._episode,
                self._offset,
                self.tier,
                self.policy_version,
                columns,
                None,
                end_of_episode,
            )
        )
        self._offset += len(self._rows)
        self._rows = []

    def append(self, step: dict[str, Any]) -> None:
        if len(self._rows) == self.chunk_length:
            self._seal(False)
        self._rows.append(step)

    def end_episode(self, final_observation: dict[str, Any]) -> None:
        final = {
            c.name: final_observation[c.name] if c.observation else np.zeros(c.shape, c.np_dtype)
            for c in self.table.signature.columns
        }
        self.append(final)
        self._seal(True)
        self._episode += 1
        self._offset = 0

    def flush(self, timeout: float | None = None) -> None:
        if self._rows:
            self._seal(False)

    def close(self, timeout: float | None = None) -> None:
        self.flush()
