"""Policies that drive a batch of grasp cells without learning: scripted and random.

:class:`ScriptedGraspPolicy` is the conservative controller (approach above the target,
descend, close with a force limit, lift) that proves the cell is graspable; it reads the
target's pose from the ``privileged`` observation, as a scripted expert may.
:class:`RandomJointPolicy` random-walks the joint targets around the home pose.
Both emit low-level actions that are always inside the action bounds.
"""

from __future__ import annotations

import enum

import mujoco
import numpy as np

from graspfleet.sim.cell import home_configuration
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import solve_ik, top_down_rotation
from graspfleet.sim.model import CellIndex, cell_xml


class Phase(enum.IntEnum):
    """Stages of the scripted grasp."""

    APPROACH = 0
    DESCEND = 1
    CLOSE = 2
    LIFT = 3


def grasp_yaw(quat_wxyz: np.ndarray) -> float:
    """Yaw (rad) for closing across an upright object's faces, folded into [−π/4, π/4]."""
    w, _, _, z = quat_wxyz
    yaw = 2.0 * np.arctan2(z, w)
    return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class ScriptedGraspPolicy:
    """Top-down grasp by waypoints and damped-least-squares IK, one state machine per cell."""

    def __init__(
        self,
        config: CellConfig,
        num_cells: int,
        approach_height: float = 0.12,
        lift_height: float = 0.15,
        tcp_speed: float = 0.5,
        grip_force: float = 15.0,
        close_steps: int = 12,
        tolerance: float = 0.01,
    ) -> None:
        """Speeds in m/s, heights in m, grip force per jaw in N."""
        self.config = config
        self.num_cells = num_cells
        self.approach_height = approach_height
        self.lift_height = lift_height
        self.step_length = tcp_speed * config.physics.control_period
        self.grip_force = min(grip_force, config.gripper.max_force)
        self.close_steps = close_steps
        self.tolerance = tolerance
        self.model = mujoco.MjSpec.from_string(cell_xml(config, 1)).compile()
        self.data = mujoco.MjData(self.model)
        self.index = CellIndex.build(self.model, 1)
        self.home = home_configuration(config)
        self.phase = np.zeros(num_cells, dtype=np.int64)
        self.phase_steps = np.zeros(num_cells, dtype=np.int64)
        self.command = np.tile(self.home, (num_cells, 1))
        self.waypoint = np.zeros((num_cells, 3))
        self.yaw = np.zeros(num_cells)
        self.goal_z = np.zeros(num_cells)
        self.reset(np.ones(num_cells, dtype=bool))

    def reset(self, which: np.ndarray) -> None:
        """Restart the state machine of the cells where ``which`` is true."""
        self.phase[which] = Phase.APPROACH
        self.phase_steps[which] = 0
        self.command[which] = self.home
        self.waypoint[which] = np.nan

    def _tcp(self, q: np.ndarray) -> np.ndarray:
        self.data.qpos[self.index.arm_qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.index.tcp_site].copy()

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Low-level actions ``(num_cells, 8)`` for the current observation."""
        actions = np.zeros((self.num_cells, 8))
        privileged = obs["privileged"].astype(np.float64)
        joints = obs["proprio"][:, :6].astype(np.float64)
        open_width = self.config.gripper.max_width
        for i in range(self.num_cells):
            target = privileged[i, :3]
            if np.isnan(self.waypoint[i, 0]):
                self.waypoint[i] = self._tcp(joints[i])
                self.yaw[i] = grasp_yaw(privileged[i, 3:7])
            grasp_z = max(target[2], 0.03)
            phase = Phase(self.phase[i])
            if phase == Phase.APPROACH:
                goal = np.array([target[0], target[1], grasp_z + self.approach_height])
            elif phase == Phase.DESCEND:
                goal = np.array([target[0], target[1], grasp_z])
            elif phase == Phase.CLOSE:
                goal = self.waypoint[i]
            else:
                goal = np.array([self.waypoint[i, 0], self.waypoint[i, 1], self.goal_z[i]])
            delta = goal - self.waypoint[i]
            distance = float(np.linalg.norm(delta))
            if distance > self.step_length:
                delta *= self.step_length / distance
            self.waypoint[i] += delta
            q, _ = solve_ik(
                self.model,
                self.data,
                self.index,
                self.waypoint[i],
                top_down_rotation(self.yaw[i]),
                self.command[i],
            )
            self.command[i] = q
            reached = distance <= self.step_length and np.linalg.norm(self._tcp(joints[i]) - goal) < self.tolerance
            self.phase_steps[i] += 1
            if phase == Phase.APPROACH and reached:
                self._advance(i, Phase.DESCEND)
            elif phase == Phase.DESCEND and reached:
                self._advance(i, Phase.CLOSE)
            elif phase == Phase.CLOSE and self.phase_steps[i] >= self.close_steps:
                self.goal_z[i] = self.waypoint[i, 2] + self.lift_height
                self._advance(i, Phase.LIFT)
            closing = self.phase[i] >= Phase.CLOSE
            actions[i, :6] = q
            actions[i, 6] = 0.0 if closing else open_width
            actions[i, 7] = self.grip_force
        return actions

    def _advance(self, cell: int, phase: Phase) -> None:
        self.phase[cell] = phase
        self.phase_steps[cell] = 0


class RandomJointPolicy:
    """Random walk of joint targets around the home pose, with a random gripper."""

    def __init__(
        self,
        config: CellConfig,
        num_cells: int,
        low: np.ndarray,
        high: np.ndarray,
        seed: int | None = None,
        step_std: float = 0.03,
    ) -> None:
        """``low``/``high``: the batch's action bounds; ``step_std``: joint random-walk step (rad)."""
        self.rng = np.random.default_rng(seed)
        self.low = np.asarray(low)
        self.high = np.asarray(high)
        self.step_std = step_std
        self.home = home_configuration(config)
        self.num_cells = num_cells
        self.command = np.tile(self.home, (num_cells, 1))

    def reset(self, which: np.ndarray) -> None:
        """Return the walk of the cells where ``which`` is true to the home pose."""
        self.command[which] = self.home

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Random actions ``(num_cells, 8)`` inside the bounds."""
        self.command += self.rng.normal(0.0, self.step_std, self.command.shape)
        self.command = np.clip(self.command, self.low[:6], self.high[:6])
        gripper = self.rng.uniform(self.low[6:], self.high[6:], (self.num_cells, 2))
        return np.concatenate([self.command, gripper], axis=1)
