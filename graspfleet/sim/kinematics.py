"""Arm kinematics on a MuJoCo model: TCP pose, Jacobian, manipulability, damped-least-squares IK.

These functions take a scratch ``MjData`` they may overwrite; they never step physics.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from graspfleet.sim.config import CellConfig
from graspfleet.sim.model import CellIndex, cell_xml


def tcp_jacobian(model: mujoco.MjModel, data: mujoco.MjData, index: CellIndex) -> np.ndarray:
    """The 6×6 Jacobian of the TCP (rows: linear m/rad, then angular rad/rad) w.r.t. the arm joints.

    ``data`` must hold current kinematics (after ``mj_kinematics``/``mj_forward``/``mj_step``).
    """
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    mujoco.mj_jacSite(model, data, jacp, jacr, index.tcp_site)
    return np.vstack([jacp[:, index.arm_dof], jacr[:, index.arm_dof]])


def top_down_rotation(yaw: float) -> np.ndarray:
    """Rotation of a TCP pointing straight down (tool z = −world z) whose fingers open along the
    horizontal direction at angle ``yaw`` + π/2 from world x (along world y at yaw 0)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    ry_pi = np.diag([-1.0, 1.0, -1.0])
    return rz @ ry_pi


def solve_ik(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    index: CellIndex,
    target_pos: np.ndarray,
    target_rot: np.ndarray,
    q_init: np.ndarray,
    iterations: int = 5,
    damping: float = 0.05,
    rotation_weight: float = 0.3,
    clip_to_limits: bool = True,
) -> tuple[np.ndarray, float]:
    """Damped-least-squares IK for the TCP; returns joint angles and the remaining pose error.

    Each iteration takes the Jacobian-transpose form of the damped pseudo-inverse,
    ``Δq = Jᵀ(JJᵀ + λ²I)⁻¹e``, with the position error in metres and the rotation error (rad)
    weighted by ``rotation_weight``. With ``clip_to_limits`` every iterate is clipped to the
    joint limits; without it the result is the unconstrained proposal (which the action
    pipeline then bounds). The returned error is ``‖e_pos‖ + rotation_weight·‖e_rot‖`` at the
    final iterate.
    """
    q = np.asarray(q_init, dtype=np.float64).copy()
    if clip_to_limits:
        q = np.clip(q, index.joint_low, index.joint_high)
    weights = np.array([1.0, 1.0, 1.0, rotation_weight, rotation_weight, rotation_weight])
    # this runs for every cell at every control step: the loop reuses its buffers and factors
    # the 6×6 system with MuJoCo's Cholesky (JJᵀ + λ²I is symmetric positive definite)
    site = index.tcp_site
    target_quat = np.empty(4)
    mujoco.mju_mat2Quat(target_quat, np.ascontiguousarray(target_rot, dtype=np.float64).ravel())
    current_quat = np.empty(4)
    rotation_err = np.empty(3)
    e = np.empty(6)
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    jac = np.empty((6, 6))
    system = np.empty((6, 6))
    regularizer = damping**2 * np.eye(6)
    solution = np.empty(6)
    error = np.inf
    for it in range(iterations + 1):
        data.qpos[index.arm_qpos] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        xmat = data.site_xmat[site]
        mujoco.mju_mat2Quat(current_quat, xmat)
        # mju_subQuat gives the rotation error in the current TCP frame; e holds it in the world's
        mujoco.mju_subQuat(rotation_err, target_quat, current_quat)
        e[:3] = target_pos - data.site_xpos[site]
        e[3:] = xmat.reshape(3, 3) @ rotation_err
        e *= weights
        error = math.hypot(e[0], e[1], e[2]) + math.hypot(e[3], e[4], e[5])
        if it == iterations:
            break
        mujoco.mj_jacSite(model, data, jacp, jacr, site)
        jac[:3] = jacp[:, index.arm_dof]
        jac[3:] = jacr[:, index.arm_dof]
        jac *= weights[:, None]
        np.matmul(jac, jac.T, out=system)
        system += regularizer
        mujoco.mju_cholFactor(system, 0.0)
        mujoco.mju_cholSolve(solution, system, e)
        q = q + jac.T @ solution
        if clip_to_limits:
            q = np.clip(q, index.joint_low, index.joint_high)
    return q, error


class ArmKinematics:
    """Forward kinematics, TCP Jacobian and IK of the grasp cell's arm on a private scratch model.

    Randomization never changes the arm's geometry, so one nominal model serves every cell.
    """

    def __init__(self, config: CellConfig) -> None:
        self.model = mujoco.MjSpec.from_string(cell_xml(config, 1)).compile()
        self.data = mujoco.MjData(self.model)
        self.index = CellIndex.build(self.model, 1)
        self.joint_low = self.index.joint_low
        self.joint_high = self.index.joint_high

    def _pose(self, q: np.ndarray) -> None:
        self.data.qpos[self.index.arm_qpos] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def tcp_pose(self, q: np.ndarray) -> np.ndarray:
        """4×4 world pose of the TCP at joint angles ``q`` (rad)."""
        self._pose(q)
        pose = np.eye(4)
        pose[:3, :3] = self.data.site_xmat[self.index.tcp_site].reshape(3, 3)
        pose[:3, 3] = self.data.site_xpos[self.index.tcp_site]
        return pose

    def tcp_pose_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP pose and its 6×6 Jacobian (linear rows first) at ``q``."""
        pose = self.tcp_pose(q)
        return pose, tcp_jacobian(self.model, self.data, self.index)

    def solve(
        self,
        target: np.ndarray,
        q_init: np.ndarray,
        iterations: int = 5,
        damping: float = 0.05,
        rotation_weight: float = 0.3,
        clip_to_limits: bool = False,
    ) -> tuple[np.ndarray, float]:
        """DLS IK towards a 4×4 TCP ``target`` (see :func:`solve_ik`)."""
        return solve_ik(
            self.model,
            self.data,
            self.index,
            target[:3, 3],
            target[:3, :3],
            q_init,
            iterations,
            damping,
            rotation_weight,
            clip_to_limits,
        )
