"""Steps into chunks: the one chunk builder every trajectory writer shares.

A writer appends one step at a time (every signature column, each with its per-step shape) and
ends an episode with its final observation, which becomes an extra row (its non-observation
columns zero) so the table can pair each step with its successor. A chunk is at most
``chunk_length`` contiguous steps of one episode; a full chunk is sealed when the next step
arrives, so an episode's last chunk is never empty. :class:`replay.client.ReplayWriter` encodes the
sealed chunks into protobuf and streams them to a shard; :class:`replay.local.TableSink` inserts
them into a table in its own process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from replay.signature import Signature


class InvalidStep(ValueError):
    """A step or final observation does not match the signature; the message names the column."""


class SealedChunk(NamedTuple):
    """Consecutive rows of one episode. ``columns`` are views of the chunker's buffers, valid only
    until the callback that receives them returns (copy or encode them there)."""

    episode_id: int
    step_offset: int
    """The first row's step within its episode."""
    columns: dict[str, np.ndarray]
    end_of_episode: bool
    outcome: Any = None
    """What the writer passed to ``end_episode`` for the episode's last chunk (None otherwise)."""


class Chunker:
    """Builds :class:`SealedChunk`\\ s of at most ``chunk_length`` steps and hands each to ``on_chunk``."""

    def __init__(
        self, signature: Signature, chunk_length: int, on_chunk: Callable[[SealedChunk], None], episode_id: int = 0
    ) -> None:
        if chunk_length < 1:
            raise ValueError(f"chunk_length: must be >= 1, got {chunk_length}")
        self.signature = signature
        self.chunk_length = chunk_length
        self.on_chunk = on_chunk
        self.episode_id = episode_id
        """The episode the next step belongs to; the next one's id is this plus one."""
        self._buffers = {c.name: np.zeros((chunk_length, *c.shape), dtype=c.np_dtype) for c in signature.columns}
        self._rows = 0
        self._offset = 0
        self.appended = 0
        """Rows appended so far (steps and final observations)."""

    @property
    def pending_rows(self) -> int:
        """Rows appended and not sealed yet."""
        return self._rows

    def append(self, step: Mapping[str, Any]) -> None:
        """Add one step: every signature column, with its per-step shape."""
        unknown = set(step) - set(self._buffers)
        if unknown:
            raise InvalidStep(f"step: unknown column {sorted(unknown)[0]!r}")
        missing = [name for name in self._buffers if name not in step]
        if missing:
            raise InvalidStep(f"step: missing column {missing[0]!r}")
        self._add(step)

    def end_episode(self, final_observation: Mapping[str, Any], outcome: Any = None) -> None:
        """Close the episode with its final observation (the extra row) and seal its last chunk,
        which carries ``outcome``."""
        missing = [c for c in self.signature.observation_columns if c not in final_observation]
        if missing:
            raise InvalidStep(f"final_observation: missing column {missing[0]!r}")
        self._add(
            {
                c.name: final_observation[c.name] if c.observation else np.zeros(c.shape, c.np_dtype)
                for c in self.signature.columns
            }
        )
        self._seal(end_of_episode=True, outcome=outcome)
        self.episode_id += 1
        self._offset = 0

    def flush(self) -> None:
        """Seal the partial chunk, if there is one (the episode goes on in the next chunk)."""
        if self._rows:
            self._seal(end_of_episode=False)

    def _add(self, step: Mapping[str, Any]) -> None:
        if self._rows == self.chunk_length:
            self._seal(end_of_episode=False)
        values = {name: np.asarray(step[name]) for name in self._buffers}
        for name, buffer in self._buffers.items():  # all checked before any is written
            if values[name].shape != buffer.shape[1:]:
                raise InvalidStep(f"step[{name}]: expected shape {buffer.shape[1:]}, got {values[name].shape}")
        for name, buffer in self._buffers.items():
            buffer[self._rows] = values[name]
        self._rows += 1
        self.appended += 1

    def _seal(self, end_of_episode: bool, outcome: Any = None) -> None:
        rows = self._rows
        columns = {name: buffer[:rows] for name, buffer in self._buffers.items()}
        chunk = SealedChunk(self.episode_id, self._offset, columns, end_of_episode, outcome)
        self._offset += rows
        self._rows = 0
        self.on_chunk(chunk)
