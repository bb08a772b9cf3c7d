"""Arm kinematics on a MuJoCo model: TCP pose, Jacobian, manipulability, damped-least-squares IK.

These functions take a scratch ``MjData`` they may overwrite; they never step physics.
"""

from __future__ import annotations

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


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (rad, world frame) that turns rotation matrix ``current`` into ``target``."""
    qt = np.empty(4)
    qc = np.empty(4)
    mujoco.mju_mat2Quat(qt, np.ascontiguousarray(target).ravel())
    mujoco.mju_mat2Quat(qc, np.ascontiguousarray(current).ravel())
    err = np.empty(3)
    mujoco.mju_subQuat(err, qt, qc)
    # mju_subQuat returns the error in the frame of qc; express it in the world frame.
    return current @ err


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
    error = np.inf
    for it in range(iterations + 1):
        data.qpos[index.arm_qpos] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        pos = data.site_xpos[index.tcp_site]
        rot = data.site_xmat[index.tcp_site].reshape(3, 3)
        e = np.concatenate([target_pos - pos, rotation_error(target_rot, rot)]) * weights
        error = float(np.linalg.norm(e[:3]) + np.linalg.norm(e[3:]))
        if it == iterations:
            break
        jac = tcp_jacobian(model, data, index) * weights[:, None]
        dq = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), e)
        q = q + dq
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
