"""Shared fixtures: real MuJoCo grasp cells (no mocks) and the default configs."""

from __future__ import annotations

import numpy as np
import pytest

from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig
from graspfleet.sim.tiers import get_tier


@pytest.fixture(scope="session")
def cell_config() -> CellConfig:
    return CellConfig()


def make_batch(
    tier: str = "T0", cells: int = 1, seed: int = 0, autoreset: bool = True, **overrides: object
) -> GraspCellBatch:
    """A real batch of grasp cells of ``tier``; ``overrides`` replace CellConfig sections."""
    import dataclasses

    config = dataclasses.replace(CellConfig(), **overrides) if overrides else CellConfig()
    return GraspCellBatch(config, get_tier(tier), num_cells=cells, seed=seed, autoreset=autoreset)


def hold_action(batch: GraspCellBatch, width: float = 0.09, force: float = 20.0) -> np.ndarray:
    """Actions that keep every arm at its home pose with the given gripper command."""
    home = batch.cells[0].home_qpos
    return np.tile(np.concatenate([home, [width, force]]), (batch.num_cells, 1))
