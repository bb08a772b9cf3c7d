"""The roles of graspfleet's parts, named once; implementations live with their subsystems.

A :class:`SimulatorBackend` steps a batch of grasp cells with low-level actions (joint
targets, gripper width, grip force) and returns batched multimodal observations in the
shape of :func:`graspfleet.spec.observation_spec`. MuJoCo
(:class:`graspfleet.sim.batch.GraspCellBatch`) is the default and the only backend that
runs here; a real-arm proxy implements the same role later.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from graspfleet.sim.config import CellConfig, TierConfig
from graspfleet.spec import ArraySpec


@runtime_checkable
class SimulatorBackend(Protocol):
    """A batch of grasp cells that can be reset and stepped."""

    num_cells: int
    spec: dict[str, ArraySpec]
    action_low: np.ndarray
    action_high: np.ndarray

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start new episodes in every cell; returns the batched observation and info."""
        ...

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance one control step: ``obs, reward, terminated, truncated, info``."""
        ...


class BackendUnavailable(RuntimeError):
    """The requested simulator backend cannot run on this machine."""


BACKENDS = ("mujoco", "isaacgym")


def make_backend(
    name: str, config: CellConfig, tier: TierConfig, num_cells: int, seed: int | None = None
) -> SimulatorBackend:
    """Build the named simulator backend; ``mujoco`` is the default and always available."""
    if name == "mujoco":
        from graspfleet.sim.batch import GraspCellBatch

        return GraspCellBatch(config, tier, num_cells, seed=seed)
    if name == "isaacgym":
        raise BackendUnavailable(
            "the isaacgym backend needs NVIDIA Isaac Gym (a GPU and NVIDIA's own package); the "
            "isaacgym-stubs dependency only provides type stubs, and no Isaac Gym adapter ships yet: "
            "use --backend mujoco"
        )
    raise ValueError(f"unknown simulator backend {name!r} (known: {', '.join(BACKENDS)})")
