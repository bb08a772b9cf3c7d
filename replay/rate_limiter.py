"""The sample-to-insert rate limiter (pure state; the server waits on it)."""

from __future__ import annotations

from replay.config import ShardConfig


class RateLimiter:
    """Decides whether inserts and samples may proceed (see :class:`ShardConfig`).

    The decision looks at the state *before* the operation, so a chunk or batch larger than the
    error buffer can never deadlock; the overshoot is bounded by one chunk or one batch.
    """

    def __init__(self, config: ShardConfig) -> None:
        self.min_size = config.min_size_to_sample
        self.samples_per_insert = config.samples_per_insert
        offset = config.samples_per_insert * config.min_size_to_sample
        self.min_diff = offset - config.error_buffer
        self.max_diff = offset + config.error_buffer
        self.inserted = 0
        self.sampled = 0

    @property
    def diff(self) -> float:
        return self.inserted * self.samples_per_insert - self.sampled

    def can_insert(self) -> bool:
        """Actors may insert unless they are too far ahead of the learner."""
        if self.samples_per_insert == 0 or self.inserted < self.min_size:
            return True
        return self.diff <= self.max_diff

    def can_sample(self) -> bool:
        """The learner may sample once the table holds the minimum and it is not too far ahead."""
        if self.inserted < self.min_size:
            return False
        return self.samples_per_insert == 0 or self.diff >= self.min_diff

    def record_insert(self, steps: int) -> None:
        self.inserted += steps

    def record_sample(self, rows: int) -> None:
        self.sampled += rows

    def state_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "sampled": self.sampled}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.inserted = int(state["inserted"])
        self.sampled = int(state["sampled"])
