"""Prometheus metrics of a replay shard (prefix ``graspfleet_replay_``), one registry per shard."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ShardMetrics:
    """The shard's series; counters give inserts/s and samples/s through ``rate()``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = "graspfleet_replay_"
        self.items = Gauge(f"{p}items", "Steps held by the table", registry=r)
        self.bytes = Gauge(f"{p}bytes", "Bytes of column data held by the table", registry=r)
        self.capacity = Gauge(f"{p}capacity", "Steps the table can hold", registry=r)
        self.tier_items = Gauge(f"{p}tier_items", "Steps held per curriculum tier", ["tier"], registry=r)
        self.inserted = Counter(f"{p}inserted_steps", "Steps inserted", registry=r)
        self.inserted_chunks = Counter(f"{p}inserted_chunks", "Chunks inserted", registry=r)
        self.sampled = Counter(f"{p}sampled_items", "Rows (transitions or sequences) sampled", registry=r)
        self.sampled_batches = Counter(f"{p}sampled_batches", "Batches sampled", registry=r)
        self.evicted = Counter(f"{p}evicted_steps", "Steps removed by the FIFO remover", registry=r)
        self.duplicates = Counter(f"{p}duplicate_chunks", "Chunks received again and skipped", registry=r)
        self.priority_updates = Counter(
            f"{p}priority_updates", "Items whose priority the learner set (prioritized sampling)", registry=r
        )
        self.rejected = Counter(f"{p}rejected_chunks", "Chunks refused as invalid", ["field"], registry=r)
        self.blocked = Counter(
            f"{p}rate_limiter_blocked_seconds", "Seconds callers waited on the rate limiter", ["side"], registry=r
        )
        self.checkpoints = Counter(f"{p}checkpoints", "Checkpoints completed", registry=r)
        self.checkpoint_seconds = Histogram(
            f"{p}checkpoint_duration_seconds",
            "Time to write a checkpoint",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.checkpoint_hold_seconds = Histogram(
            f"{p}checkpoint_hold_seconds",
            "Time the table was held to copy its index",
            registry=r,
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1),
        )
        self.checkpoint_failures = Counter(
            f"{p}checkpoint_failures", "Periodic checkpoints that failed (the previous checkpoint stays)", registry=r
        )
        self.checkpoint_written = Counter(
            f"{p}checkpoint_written_bytes",
            "Column bytes checkpoints wrote (segments unchanged since the previous checkpoint are linked, not written)",
            registry=r,
        )
        self.torn = Counter(f"{p}checkpoint_torn_steps", "Slots overwritten during a checkpoint write", registry=r)
        self.restored = Gauge(f"{p}restored_steps", "Steps restored from the checkpoint at start-up", registry=r)
