"""Helpers the tests share: real MuJoCo grasp cells (no mocks) and small training configs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from graspfleet.config import from_mapping, to_mapping
from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig
from graspfleet.sim.tiers import get_tier
from orchestrator.config import TrainConfig


def make_batch(
    tier: str = "T0", cells: int = 1, seed: int = 0, autoreset: bool = True, **overrides: object
) -> GraspCellBatch:
    """A real batch of grasp cells of ``tier``; ``overrides`` replace CellConfig sections."""
    config = dataclasses.replace(CellConfig(), **overrides) if overrides else CellConfig()
    return GraspCellBatch(config, get_tier(tier), num_cells=cells, seed=seed, autoreset=autoreset)


def hold_action(batch: GraspCellBatch, width: float = 0.09, force: float = 20.0) -> np.ndarray:
    """Actions that keep every arm at its home pose with the given gripper command."""
    home = batch.cells[0].home_qpos
    return np.tile(np.concatenate([home, [width, force]]), (batch.num_cells, 1))


SMALL_TRAIN: dict[str, dict[str, object]] = {
    "learning": {"device": "cpu", "batch_size": 16, "publish_every": 5, "demonstrations": 2},
    "actors": {"chunk_length": 8, "version_check_every": 5},
    "replay": {"capacity": 20_000, "min_size_to_sample": 1},
}
"""The sections :func:`small_train_config` changes from the defaults."""


def small_train_config(**sections: object) -> TrainConfig:
    """A training config small enough for a test: CPU, short chunks, frequent publishing and checks,
    two expert episodes. Each keyword is a section (or ``tier``/``seed``): a mapping of keys updates
    that section, a config object replaces it, e.g. ``small_train_config(actors={"cells": 2})``."""
    data: dict[str, object] = {name: dict(values) for name, values in SMALL_TRAIN.items()}
    for name, value in sections.items():
        if isinstance(value, Mapping):
            data[name] = {**data.get(name, {}), **value}  # type: ignore[dict-item]
        else:
            data[name] = to_mapping(value)
    return from_mapping(TrainConfig, data)


SMALL_RUN = {
    "learning.device": "cpu",
    "actors.cells": 2,
    "actors.count": 1,
    "budget.env_steps": 10_000_000,
    "learning.min_replay": 40,
    "learning.batch_size": 16,
    "actors.chunk_length": 8,
    "learning.publish_every": 5,
    "actors.version_check_every": 5,
    "learning.checkpoint_every": 10,
    "learning.demonstrations": 2,
    "replay.capacity": 20_000,
}
"""``--set`` overrides for a small `graspfleet train` run started from a test (until stopped)."""


def small_run_arguments(changes: Mapping[str, object] | None = None) -> list[str]:
    """``--set key=value`` arguments for :data:`SMALL_RUN` with ``changes`` (dotted keys)."""
    return [arg for key, value in {**SMALL_RUN, **(changes or {})}.items() for arg in ("--set", f"{key}={value}")]
