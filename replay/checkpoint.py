"""Checkpoints of a replay table on disk, written without holding up inserts and samples.

A checkpoint is taken in two parts. :func:`capture` copies the table's index (a few small
arrays and the episode/writer bookkeeping): the only moment the table is held. :func:`write`
then saves the live column arrays from another thread while the table keeps serving; a slot
overwritten during the write is detected afterwards by its generation and left out of the
checkpoint (such slots are the oldest items, being evicted anyway). Only the slots the ring has
filled so far are written (it fills from slot 0 up before it wraps), so a checkpoint of a table
that holds little is small however large its capacity.

Each column is stored in segments of ``SEGMENT_SLOTS`` slots, and a checkpoint writes only the
segments holding a slot whose generation differs from the previous checkpoint's: the others are
hard links to the previous checkpoint's files (a slot's data changes only with its generation).
Between two checkpoints of a full table the FIFO ring overwrites what was inserted in between,
so a checkpoint writes about that much, not the whole table. Every checkpoint directory is still
complete on its own. Files are ``.npy`` arrays and JSON; nothing is pickled, and loading never
unpickles. Every file and directory is fsynced before the new checkpoint is renamed into place,
and the swap is atomic: a crash or power loss mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from replay.signature import Signature
from replay.table import ReplayTable, filled_slots

FORMAT_VERSION = 3
"""3: each column in segments of the filled slots; 2: one file per column of the filled slots;
1: one file per column of every slot. All three restore."""
READABLE_VERSIONS = (1, 2, 3)
CURRENT = "current"
SEGMENT_SLOTS = 4096
"""Slots per column file: the unit a checkpoint rewrites or links from the previous one."""


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
    written_bytes: int = 0
    """Column bytes written; the segments not written are links to the previous checkpoint's."""
    linked_bytes: int = 0


def capture(table: ReplayTable) -> Capture:
    """Copy the index (run on the thread that owns the table)."""
    arrays, meta = table.index_state()
    return Capture(arrays, meta, time.perf_counter())


def write(directory: Path, table: ReplayTable, cut: Capture) -> CheckpointReport:
    """Write the columns (live) and the captured index under ``directory/current`` (any thread)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".writing-*"):  # left by a crash mid-write (one writer per directory)
        shutil.rmtree(stale, ignore_errors=True)
    staging = directory / f".writing-{os.getpid()}-{time.monotonic_ns()}"
    staging.mkdir(parents=True)
    arrays = dict(cut.arrays)
    generation = arrays["generation"]
    filled = filled_slots(generation)  # slots past it were never written at the cut
    before = _previous_generation(directory / CURRENT, table)
    written = np.zeros(len(generation), dtype=bool)
    written_bytes = linked_bytes = 0
    for name in table.storage:
        (staging / "columns" / name).mkdir(parents=True)
    for start in range(0, filled, SEGMENT_SLOTS):
        end = min(start + SEGMENT_SLOTS, filled)
        file = f"{start // SEGMENT_SLOTS:06d}.npy"
        unchanged = before is not None and np.array_equal(before[start:end], generation[start:end])
        if unchanged and _link_segment(directory / CURRENT / "columns", staging / "columns", table, file):
            linked_bytes += (end - start) * table.signature.step_bytes
            continue
        for name, column in table.storage.items():
            _save_durably(staging / "columns" / name / file, column[start:end])
        written[start:end] = True
        written_bytes += (end - start) * table.signature.step_bytes
    # a linked segment holds the previous checkpoint's copy, which a later overwrite cannot tear
    torn = written & (table.generation != generation) & (generation >= 0)
    if torn.any():
        arrays["generation"] = np.where(torn, -1, generation)
    with open(staging / "index.npz", "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
        f.flush()
        os.fsync(f.fileno())
    for name in table.storage:
        _fsync_dir(staging / "columns" / name)
    _fsync_dir(staging / "columns")
    meta = dict(cut.meta)
    meta["format_version"] = FORMAT_VERSION
    meta["segment_slots"] = SEGMENT_SLOTS
    meta["signature"] = table.signature.to_mapping()
    meta["capacity"] = table.config.capacity
    meta["torn_steps"] = int(torn.sum())
    with open(staging / "meta.json", "w") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(staging)
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
    seconds = time.perf_counter() - cut.started
    return CheckpointReport(target, steps, int(torn.sum()), dict(meta["writers"]), seconds, written_bytes, linked_bytes)


def _previous_generation(path: Path, table: ReplayTable) -> np.ndarray | None:
    """The slot generations of the checkpoint at ``path`` when its segments can be reused by
    ``table``'s next checkpoint (same format, segment size, signature and capacity), else None."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        if (
            meta.get("format_version") != FORMAT_VERSION
            or meta.get("segment_slots") != SEGMENT_SLOTS
            or int(meta["capacity"]) != table.config.capacity
            or Signature.from_mapping(meta["signature"]) != table.signature
        ):
            return None
        with np.load(path / "index.npz", allow_pickle=False) as npz:
            generation: np.ndarray = npz["generation"]
        return generation
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # not reusable: every segment is written


def _link_segment(source: Path, target: Path, table: ReplayTable, file: str) -> bool:
    """Hard-link every column's segment ``file`` from ``source`` into ``target``; False (after
    removing what it linked, so the caller writes the segment) when one cannot be linked."""
    try:
        for name in table.storage:
            os.link(source / name / file, target / name / file)
    except OSError:
        for name in table.storage:
            (target / name / file).unlink(missing_ok=True)
        return False
    return True


def _save_durably(path: Path, array: np.ndarray) -> None:
    """``np.save`` (no pickles) and fsync: the checkpoint is swapped in only once its data is on disk."""
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


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
    columns: dict[str, list[np.ndarray]] = {}
    for name in table.storage:
        if meta["format_version"] < 3:
            files = [path / "columns" / f"{name}.npy"]
        else:
            files = sorted((path / "columns" / name).glob("*.npy"))
        columns[name] = [np.load(file, mmap_mode="r", allow_pickle=False) for file in files]
    table.load_state(arrays, columns, meta)
    return table.size
