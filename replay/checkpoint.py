"""Checkpoints of a replay table on disk, written without holding up inserts and samples.

A checkpoint is taken in two parts. :func:`capture` copies the table's index (a few small
arrays and the episode/writer bookkeeping): the only moment the table is held. :func:`write`
then saves the live column arrays from another thread while the table keeps serving; a slot
overwritten during the write is detected afterwards by its generation and left out of the
checkpoint (such slots are the oldest items, being evicted anyway). Only the slots the ring has
filled so far are written (it fills from slot 0 up before it wraps), so a checkpoint of a table
that holds little is small however large its capacity. Files are ``.npy`` arrays
and JSON; nothing is pickled, and loading never unpickles. The directory is replaced
atomically: a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from replay.signature import Signature
from replay.table import ReplayTable, filled_slots

FORMAT_VERSION = 2
"""2: columns hold the filled slots only (1: every slot); both restore."""
READABLE_VERSIONS = (1, 2)
CURRENT = "current"


class Capture(NamedTuple):
    """A consistent cut of the table's index."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    started: float


class CheckpointReport(NamedTuple):
    path: Path
    steps: int
    torn_steps: int
    """Slots overwritten while the columns were written, left out."""
    writers: dict[str, int]
    """Per writer, the highest chunk sequence the checkpoint contains."""
    seconds: float


def capture(table: ReplayTable) -> Capture:
    """Copy the index (run on the thread that owns the table)."""
    arrays, meta = table.index_state()
    return Capture(arrays, meta, time.perf_counter())


def write(directory: Path, table: ReplayTable, cut: Capture) -> CheckpointReport:
    """Write the columns (live) and the captured index under ``directory/current`` (any thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f".writing-{os.getpid()}-{time.monotonic_ns()}"
    (staging / "columns").mkdir(parents=True)
    arrays = dict(cut.arrays)
    filled = filled_slots(arrays["generation"])  # slots past it were never written at the cut
    for name, column in table.storage.items():
        np.save(staging / "columns" / f"{name}.npy", column[:filled], allow_pickle=False)
    torn = (table.generation != arrays["generation"]) & (arrays["generation"] >= 0)
    if torn.any():
        arrays["generation"] = np.where(torn, -1, arrays["generation"])
    np.savez(staging / "index.npz", **arrays)  # type: ignore[arg-type]
    meta = dict(cut.meta)
    meta["format_version"] = FORMAT_VERSION
    meta["signature"] = table.signature.to_mapping()
    meta["capacity"] = table.config.capacity
    meta["torn_steps"] = int(torn.sum())
    with open(staging / "meta.json", "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    target = directory / CURRENT
    previous = directory / ".previous"
    if previous.exists():
        shutil.rmtree(previous)
    if target.exists():
        target.rename(previous)
    staging.rename(target)
    if previous.exists():
        shutil.rmtree(previous)
    _fsync_dir(directory)
    steps = int((arrays["generation"] >= 0).sum())
    return CheckpointReport(target, steps, int(torn.sum()), dict(meta["writers"]), time.perf_counter() - cut.started)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(directory: Path) -> bool:
    return (directory / CURRENT / "meta.json").is_file()


def check_compatible(directory: Path, signature: Signature, capacity: int) -> dict[str, Any]:
    """The metadata of ``directory/current``; ValueError if a table of ``signature`` and
    ``capacity`` cannot restore it (another format, signature or capacity: no guessing)."""
    path = directory / CURRENT
    meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ValueError(f"{path}: checkpoint format {meta.get('format_version')}, expected one of {READABLE_VERSIONS}")
    if Signature.from_mapping(meta["signature"]) != signature:
        raise ValueError(f"{path}: checkpoint signature differs from the table's; refusing to restore")
    if int(meta["capacity"]) != capacity:
        raise ValueError(f"{path}: checkpoint capacity {meta['capacity']} differs from {capacity}")
    return meta


def restore(directory: Path, table: ReplayTable) -> int:
    """Load ``directory/current`` into ``table``; returns the steps restored. Refuses (ValueError)
    what :func:`check_compatible` refuses."""
    path = directory / CURRENT
    meta = check_compatible(directory, table.signature, table.config.capacity)
    with np.load(path / "index.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    # mapped, not read: the table copies them into its own preallocated columns
    columns = {
        name: np.load(path / "columns" / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in table.storage
    }
    table.load_state(arrays, columns, meta)
    return table.size
