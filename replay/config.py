"""Configuration of a replay shard (one table), validated at construction."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from graspfleet.config import require


@dataclasses.dataclass(frozen=True)
class ShardConfig:
    """Capacity, sampling, rate limiting, checkpointing and message limits of one shard.

    The rate limiter follows Reverb's sample-to-insert ratio: with ``diff = inserted·spi −
    sampled`` (steps inserted, rows sampled), sampling waits until ``min_size_to_sample`` steps
    were inserted and while ``diff < spi·min_size − error_buffer`` (the learner is ahead);
    inserting waits while ``diff > spi·min_size + error_buffer`` (the actors are ahead).
    ``samples_per_insert = 0`` disables the ratio (only the minimum size applies).
    """

    capacity: int = 100_000
    """Steps held; the oldest are removed first (FIFO) when full."""
    sampler: Literal["uniform", "prioritized"] = "uniform"
    priority_exponent: float = 0.6
    """α of prioritized sampling, P(i) ∝ p_i^α (Ape-X/R2D2)."""
    importance_exponent: float = 0.4
    """β of the importance weights (N·P(i))^-β, normalized by the batch maximum."""
    priority_epsilon: float = 1e-3
    """Added to an item's |TD error| when the learner sets its priority, so no item's sampling
    probability falls to zero (prioritized sampling only)."""
    min_size_to_sample: int = 1_000
    samples_per_insert: float = 0.0
    error_buffer: float = 10_000.0
    max_tiers: int = 64
    """Tiers are 0 … max_tiers − 1."""
    checkpoint_interval: float = 60.0
    """Seconds between checkpoints (when a checkpoint directory is set); 0 disables periodic ones."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest gRPC message either way; the transport refuses larger ones (RESOURCE_EXHAUSTED)."""
    max_chunk_bytes: int = 16 * 1024 * 1024
    """Largest chunk (column data) the table accepts; larger ones get INVALID_ARGUMENT."""
    closed_episode_memory: int = 100_000
    """Ended episodes remembered to refuse late chunks for them."""

    def __post_init__(self) -> None:
        require(self.capacity >= 2, f"replay.capacity: must be >= 2 steps, got {self.capacity}")
        require(self.sampler in ("uniform", "prioritized"), f"replay.sampler: unknown sampler {self.sampler!r}")
        require(self.priority_exponent >= 0, "replay.priority_exponent: must be >= 0")
        require(self.importance_exponent >= 0, "replay.importance_exponent: must be >= 0")
        require(self.priority_epsilon > 0, "replay.priority_epsilon: must be > 0")
        require(self.min_size_to_sample >= 1, "replay.min_size_to_sample: must be >= 1")
        require(
            self.samples_per_insert >= 0 and math.isfinite(self.samples_per_insert),
            "replay.samples_per_insert: must be finite and >= 0",
        )
        require(self.error_buffer >= 0, "replay.error_buffer: must be >= 0")
        require(1 <= self.max_tiers <= 64, "replay.max_tiers: must be in [1, 64]")
        require(self.checkpoint_interval >= 0, "replay.checkpoint_interval: must be >= 0 s")
        require(self.max_message_bytes >= 1024, "replay.max_message_bytes: must be >= 1 KiB")
        require(
            0 < self.max_chunk_bytes <= self.max_message_bytes,
            "replay.max_chunk_bytes: must be in (0, max_message_bytes]",
        )
        require(self.closed_episode_memory >= 1, "replay.closed_episode_memory: must be >= 1")
