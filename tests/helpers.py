"""Helpers the tests share: real MuJoCo grasp cells (no mocks) and small training configs."""

from __future__ import annotations

import dataclasses

import numpy as np

from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig
from graspfleet.sim.tiers import get_tier
from orchestrator.config import TrainConfig
from replay.config import ShardConfig


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


def small_train_config(**overrides: object) -> TrainConfig:
    """A training config small enough for a test: CPU, short chunks, frequent publishing and checks,
    two expert episodes."""
    defaults: dict[str, object] = {
        "device": "cpu",
        "batch_size": 16,
        "chunk_length": 8,
        "publish_every": 5,
        "version_check_every": 5,
        "demonstrations": 2,
        "replay": ShardConfig(capacity=20_000, min_size_to_sample=1),
    }
    return TrainConfig(**{**defaults, **overrides})  # type: ignore[arg-type]


SMALL_RUN = {
    "device": "cpu",
    "cells": 2,
    "actors": 1,
    "env_steps": 10_000_000,
    "min_replay": 40,
    "batch_size": 16,
    "chunk_length": 8,
    "publish_every": 5,
    "version_check_every": 5,
    "checkpoint_every": 10,
    "demonstrations": 2,
    "replay.capacity": 20_000,
}
"""``--set`` overrides for a small `graspfleet train` run started from a test (until stopped)."""


def small_run_arguments(**changes: object) -> list[str]:
    """``--set key=value`` arguments for :data:`SMALL_RUN` with ``changes``."""
    return [arg for key, value in {**SMALL_RUN, **changes}.items() for arg in ("--set", f"{key}={value}")]
