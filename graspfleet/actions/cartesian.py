"""A Cartesian action space for any simulator backend, through the safe action pipeline.

:class:`CartesianBackend` wraps a joint-level :class:`~graspfleet.interfaces.SimulatorBackend`:
its actions are ``(ρ, ω, width, force)`` per cell (see
:data:`graspfleet.actions.pipeline.CARTESIAN_FIELDS`), and its ``info`` reports, per cell and
step, ``out_of_bounds_proposed``, ``held``, ``slowdown`` (plus ``nonfinite``, ``unreachable``,
``proposed_outside_joint_limits``, ``speed_limited`` and the ROS ``pose_command``). It is itself a backend, so
runners, actors and the Gymnasium env use it unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graspfleet.actions.config import ActionConfig
from graspfleet.actions.pipeline import PipelineStep, SafeActionPipeline
from graspfleet.interfaces import SimulatorBackend
from graspfleet.sim.config import CellConfig
from graspfleet.spec import ArraySpec

JOINT_POSITIONS = slice(0, 6)
"""Where the measured joint positions sit in ``proprio``."""


def cartesian_action_bounds(cell: CellConfig, config: ActionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of a Cartesian action ``(ρ, ω, width, force)``: the per-step twist
    limits (m, rad), the gripper's opening (m) and its force limit (N)."""
    t, r = config.max_translation_step, config.max_rotation_step
    low = np.array([-t, -t, -t, -r, -r, -r, 0.0, 0.0])
    high = np.array([t, t, t, r, r, r, cell.gripper.max_width, cell.gripper.max_force])
    return low, high


class CartesianBackend:
    """A backend whose actions are TCP twists plus gripper commands (always within limits)."""

    def __init__(
        self, backend: SimulatorBackend, cell: CellConfig, config: ActionConfig | None = None, strict: bool = True
    ) -> None:
        """``strict``: NaN/Inf in an action raises ``ValueError`` (True) or becomes a counted
        hold (False, the actor runtime)."""
        self.backend = backend
        self.config = config or ActionConfig()
        self.strict = strict
        self.num_cells = backend.num_cells
        self.spec: dict[str, ArraySpec] = backend.spec
        self.pipeline = SafeActionPipeline(cell, self.config, backend.num_cells)
        self.action_low, self.action_high = cartesian_action_bounds(cell, self.config)
        self._joints = np.zeros((backend.num_cells, 6))
        self.last_step: PipelineStep | None = None

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.backend.reset(seed=seed)
        self._joints = obs["proprio"][:, JOINT_POSITIONS].astype(np.float64)
        self.pipeline.reset(np.ones(self.num_cells, dtype=bool), self._joints)
        return obs, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        decided = self.pipeline(actions, self._joints, strict=self.strict)
        obs, reward, terminated, truncated, info = self.backend.step(decided.joint_action)
        self._joints = obs["proprio"][:, JOINT_POSITIONS].astype(np.float64)
        done = terminated | truncated
        if done.any():
            # autoreset: the new episodes start from the arm's new measured pose
            self.pipeline.reset(done, self._joints)
        info["out_of_bounds_proposed"] = decided.out_of_bounds_proposed
        info["proposed_outside_joint_limits"] = decided.proposed_outside_joint_limits
        info["speed_limited"] = decided.speed_limited
        info["held"] = decided.held
        info["slowdown"] = decided.slowdown
        info["nonfinite"] = decided.nonfinite
        info["unreachable"] = decided.unreachable
        info["pose_command"] = decided.pose_command
        info["joint_action"] = decided.joint_action
        self.last_step = decided
        return obs, reward, terminated, truncated, info
