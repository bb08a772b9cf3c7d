"""The roles of graspfleet's parts, named once; implementations live with their subsystems.

A :class:`SimulatorBackend` steps a batch of grasp cells with low-level actions (joint
targets, gripper width, grip force) and returns batched multimodal observations in the
shape of :func:`graspfleet.spec.observation_spec`. MuJoCo
(:class:`graspfleet.sim.batch.GraspCellBatch`) is the default and the only backend that
runs here; a real-arm proxy implements the same role later.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class EpisodeOutcome:
    """One finished training episode, as an actor saw it."""

    generation: int
    success: bool
    tier: str = ""
    """The tier it ran on (for per-tier metrics; the gate goes by generation)."""
    collision: bool = False
    slip: bool = False
    force_overshoot: bool = False
    intervened: bool = False
    """The scripted expert took the episode over (actors/intervention.py): whatever its outcome,
    the policy did not succeed."""

    @property
    def policy_success(self) -> bool:
        """Success of the policy on its own: a success the expert did not take over."""
        return self.success and not self.intervened


class WeightSource(Protocol):
    """Where published weights come from (the control plane, or a serial run's in-memory store)."""

    def latest_version(self) -> int: ...

    def fetch_weights(self, version: int | None = None) -> tuple[int, bytes] | None: ...


class TierSource(Protocol):
    """Where the curriculum's current tier comes from (the control plane, or a serial run's in-memory store)."""

    def curriculum_tier(self) -> tuple[str, int] | None:
        """(tier name, generation), or None before the curriculum has set one."""
        ...


class BlockingAnnouncements(Protocol):
    """Notices of new versions that can be waited on (the control plane's announcement channel)."""

    def wait(self, timeout: float) -> int | None:
        """The highest version announced within ``timeout`` seconds, or None."""
        ...

    def close(self) -> None: ...
