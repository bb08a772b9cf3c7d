"""What a replay shard's periodic checkpoint costs once its table is full, against rewriting it all.

A table of the grasp signature at the run's capacity (``replay.capacity``) is filled until the
ring has wrapped, then checkpointed twice into one directory: the first checkpoint writes every
segment (the baseline: what every checkpoint cost before segments were linked), the second runs
after ``--new-steps`` more inserts (by default what one shard of the default run receives in one
``replay.checkpoint_interval``) and rewrites only the segments those steps touched. A third
checkpoint of the same table into an empty directory is the full write of the very same state.
Also timed: restoring the incremental checkpoint into a fresh table.

Prints one JSON object as its last line: bytes written and seconds of the incremental and the
full checkpoint, their ratios, and the restore time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `replay` package: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from actors.trajectory import grasp_signature  # noqa: E402
from orchestrator.config import TrainConfig  # noqa: E402
from replay import checkpoint  # noqa: E402
from replay.table import DecodedChunk, ReplayTable  # noqa: E402

CHUNK_STEPS = 256


def fill(table: ReplayTable, steps: int, sequence: int, rng: np.random.Generator) -> int:
    """Insert ``steps`` steps in chunks (episodes of one chunk each); returns the next sequence."""
    columns = {}
    for c in table.signature.columns:
        shape = (CHUNK_STEPS, *c.shape)
        if c.np_dtype.kind == "f":
            columns[c.name] = rng.standard_normal(shape).astype(c.np_dtype)
        else:
            columns[c.name] = np.zeros(shape, dtype=c.np_dtype)
    for _ in range(steps // CHUNK_STEPS):
        table.insert(DecodedChunk("bench", sequence, "bench", sequence, 0, 0, 0, columns, None, True))
        sequence += 1
    return sequence


def timed_checkpoint(directory: Path, table: ReplayTable) -> checkpoint.CheckpointReport:
    return checkpoint.write(directory, table, checkpoint.capture(table))


def main() -> None:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=defaults.replay.capacity)
    parser.add_argument(
        "--new-steps",
        type=int,
        default=4_608,
        help="steps inserted between the two checkpoints (default: one of the default run's two shards in one "
        "replay.checkpoint_interval, at the ≈75 steps/s each measured in 240 s default runs)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    table = ReplayTable(grasp_signature(), dataclasses.replace(defaults.replay, capacity=args.capacity))
    sequence = fill(table, args.capacity + args.capacity // 10, 1, rng)  # full, and wrapped
    root = Path(tempfile.mkdtemp(prefix="graspfleet-bench-checkpoint-", dir=args.dir))
    try:
        first = timed_checkpoint(root / "incremental", table)
        fill(table, args.new_steps, sequence, rng)
        incremental = timed_checkpoint(root / "incremental", table)
        full = timed_checkpoint(root / "full", table)
        restored = ReplayTable(table.signature, table.config)
        start = time.perf_counter()
        checkpoint.restore(root / "incremental", restored)
        restore_seconds = time.perf_counter() - start
        assert restored.size == table.size
    finally:
        shutil.rmtree(root)

    result = {
        "capacity": args.capacity,
        "step_bytes": table.signature.step_bytes,
        "new_steps": args.new_steps,
        "first_checkpoint": {"written_bytes": first.written_bytes, "seconds": round(first.seconds, 3)},
        "incremental": {
            "written_bytes": incremental.written_bytes,
            "linked_bytes": incremental.linked_bytes,
            "seconds": round(incremental.seconds, 3),
        },
        "full_rewrite": {"written_bytes": full.written_bytes, "seconds": round(full.seconds, 3)},
        "written_ratio": round(incremental.written_bytes / full.written_bytes, 4),
        "seconds_ratio": round(incremental.seconds / full.seconds, 4),
        "restore_seconds": round(restore_seconds, 3),
    }
    for name in ("first_checkpoint", "incremental", "full_rewrite"):
        part = result[name]
        assert isinstance(part, dict)
        print(f"{name:17s} {part['written_bytes'] / 1e6:9.1f} MB written in {part['seconds']:.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
