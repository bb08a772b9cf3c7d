"""Arm kinematics: TCP pose, Jacobian and damped-least-squares IK.

Two implementations of the same chain:

- on a MuJoCo model, one arm at a time (:func:`solve_ik`, :class:`ArmKinematics`): these take a
  scratch ``MjData`` they may overwrite and never step physics;
- :class:`BatchArmKinematics`, many arms at once in NumPy, from the :class:`ArmChain` read out of
  the same model (the action pipeline's per-step work, where a per-cell Python loop over MuJoCo
  calls costs more than the arithmetic).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import mujoco
import numpy as np

from graspfleet.geometry import se3
from graspfleet.sim.config import CellConfig
from graspfleet.sim.model import ARM_JOINTS, TCP_SITE, CellIndex, cell_xml


def tcp_jacobian(model: mujoco.MjModel, data: mujoco.MjData, index: CellIndex) -> np.ndarray:
    """The 6×6 Jacobian of the TCP (rows: linear m/rad, then angular rad/rad) w.r.t. the arm joints.

    ``data`` must hold current kinematics (after ``mj_kinematics``/``mj_forward``/``mj_step``).
    """
    jacp = np.zeros((3, model.nv))
    jacr = np.zeros((3, model.nv))
    mujoco.mj_jacSite(model, data, jacp, jacr, index.tcp_site)
    return np.vstack([jacp[:, index.arm_dof], jacr[:, index.arm_dof]])


def top_down_rotation(yaw: float | np.ndarray) -> np.ndarray:
    """Rotation ``(…, 3, 3)`` of a TCP pointing straight down (tool z = −world z) whose fingers
    open along the horizontal direction at angle ``yaw`` (rad, any shape) + π/2 from world x (along
    world y at yaw 0): ``Rz(yaw) · diag(−1, 1, −1)``."""
    c, s = np.cos(yaw), np.sin(yaw)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([-c, -s, zero], -1), np.stack([-s, c, zero], -1), np.stack([zero, zero, -one], -1)], -2)


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


def _fixed_transform(pos: np.ndarray, quat_wxyz: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.asarray(quat_wxyz, dtype=np.float64))
    pose[:3, :3] = rotation.reshape(3, 3)
    pose[:3, 3] = pos
    return pose


@dataclasses.dataclass(frozen=True)
class ArmChain:
    """The arm as fixed transforms and joint axes, read from the cell's MuJoCo model.

    The TCP pose at joint angles q is ``root · Π_j (offset_j · Rot(axis_j, q_j) about anchor_j) · tcp``.
    """

    root: np.ndarray
    """(4, 4) world → the parent of the first jointed body (the static base)."""
    offsets: np.ndarray
    """(6, 4, 4) each jointed body's pose in its parent."""
    axes: np.ndarray
    """(6, 3) unit joint axes in their bodies."""
    anchors: np.ndarray
    """(6, 3) joint anchors in their bodies (m)."""
    tcp: np.ndarray
    """(4, 4) the TCP site in the last jointed body."""
    joint_low: np.ndarray
    joint_high: np.ndarray

    @classmethod
    def from_model(cls, model: mujoco.MjModel) -> ArmChain:
        """Read the chain of ``ARM_JOINTS`` and the TCP site; each jointed body must be the child of
        the one before (as the cell's model writes them) and carry the TCP on the last one."""
        joints = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) for name in ARM_JOINTS]
        bodies = [int(model.jnt_bodyid[j]) for j in joints]
        for parent, child in itertools.pairwise(bodies):
            if int(model.body_parentid[child]) != parent:
                raise ValueError(f"arm chain: body {child} is not the child of body {parent}")
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, TCP_SITE)
        if int(model.site_bodyid[site]) != bodies[-1]:
            raise ValueError(f"arm chain: site {TCP_SITE!r} is not on the last arm body")
        root = np.eye(4)
        base = []
        body = int(model.body_parentid[bodies[0]])
        while body != 0:
            base.append(body)
            body = int(model.body_parentid[body])
        for body in reversed(base):
            root = root @ _fixed_transform(model.body_pos[body], model.body_quat[body])
        return cls(
            root=root,
            offsets=np.stack([_fixed_transform(model.body_pos[b], model.body_quat[b]) for b in bodies]),
            axes=model.jnt_axis[joints].astype(np.float64),
            anchors=model.jnt_pos[joints].astype(np.float64),
            tcp=_fixed_transform(model.site_pos[site], model.site_quat[site]),
            joint_low=model.jnt_range[joints, 0].astype(np.float64),
            joint_high=model.jnt_range[joints, 1].astype(np.float64),
        )

    @classmethod
    def from_cell(cls, config: CellConfig) -> ArmChain:
        """The chain of the cell's nominal model (randomization never changes the arm's geometry)."""
        return cls.from_model(mujoco.MjSpec.from_string(cell_xml(config, 1)).compile())


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame rotation vectors ``Log(target · currentᵀ)`` of rotation batches ``(N, 3, 3)``.

    From the skew part, ``sin θ · axis``, scaled by θ / sin θ: cheap, and accurate while sin θ is
    not small, which covers every rotation error the pipeline's IK meets with its default step
    limits. As θ → π the skew part vanishes and loses the axis, so errors past π/2 take the
    quaternion route of :func:`se3.so3_log` instead.
    """
    r = target @ np.swapaxes(current, -1, -2)
    flat = r.reshape(-1, 9)
    skew = 0.5 * (flat[:, [7, 2, 3]] - flat[:, [5, 6, 1]])  # (r21 − r12, r02 − r20, r10 − r01) / 2
    cos = 0.5 * (flat[:, 0] + flat[:, 4] + flat[:, 8] - 1.0)
    sin = np.sqrt(np.einsum("ni,ni->n", skew, skew))
    scale = np.where(sin > 1e-12, np.arctan2(sin, cos) / np.maximum(sin, 1e-300), 1.0)
    out = skew * scale[:, None]
    wide = cos < 0.0
    if wide.any():
        out[wide] = se3.so3_log(r[wide])
    return out


class BatchArmKinematics:
    """FK, TCP Jacobian and DLS IK of N arms at once on an :class:`ArmChain`, in NumPy.

    The same quantities as :class:`ArmKinematics` (tests hold them to MuJoCo's to 1e-10) in a fixed
    number of array operations per call, whatever N: the action pipeline's kinematics for a batch of
    cells without a per-cell loop.
    """

    def __init__(self, chain: ArmChain) -> None:
        self.chain = chain
        self.joint_low = chain.joint_low
        self.joint_high = chain.joint_high
        skew = se3.hat(chain.axes)
        self._skew = skew
        self._skew_squared = skew @ skew
        self._offset_rotation = chain.offsets[:, :3, :3]
        self._offset_translation = chain.offsets[:, :3, 3]
        self._anchors = chain.anchors[:, :, None]
        self._anchored = bool(np.any(chain.anchors != 0.0))
        self._local_template = chain.offsets.copy()[None]
        """Each body's transform in its parent at q = 0 but for the rotation block, filled per call."""
        self._axes = chain.axes[:, :, None]

    def _joint_frames(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World poses of the jointed bodies ``(N, 6, 4, 4)`` and of the TCP ``(N, 4, 4)``."""
        q = np.asarray(q, dtype=np.float64)
        n, dof = q.shape
        # Rodrigues per joint: Rot = I + sin q [a]× + (1 − cos q) [a]×²
        rotation = (
            np.eye(3)
            + np.sin(q)[:, :, None, None] * self._skew
            + (1.0 - np.cos(q))[:, :, None, None] * self._skew_squared
        )
        local = np.repeat(self._local_template, n, axis=0)
        np.matmul(self._offset_rotation, rotation, out=local[:, :, :3, :3])
        if self._anchored:  # a rotation about the anchor a moves the body's origin by a − Rot a
            local[:, :, :3, 3] += (self._offset_rotation @ (self._anchors - rotation @ self._anchors))[..., 0]
        local[:, :, 3, 3] = 1.0
        frames = np.empty((n, dof, 4, 4))
        pose: np.ndarray = self.chain.root
        for j in range(dof):
            pose = np.matmul(pose, local[:, j], out=frames[:, j])
        return frames, frames[:, -1] @ self.chain.tcp

    def tcp_pose(self, q: np.ndarray) -> np.ndarray:
        """TCP world poses ``(N, 4, 4)`` at joint angles ``q`` ``(N, 6)`` (rad)."""
        return self._joint_frames(q)[1]

    def tcp_pose_and_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP poses ``(N, 4, 4)`` and Jacobians ``(N, 6, 6)`` (rows: linear, then angular; one
        column per joint: ``a × (p_tcp − p_anchor)`` over ``a``, the joint's world axis)."""
        frames, tcp = self._joint_frames(q)
        rotations = frames[..., :3, :3]
        axes = (rotations @ self._axes)[..., 0]
        lever = tcp[:, None, :3, 3] - frames[..., :3, 3]
        if self._anchored:
            lever -= (rotations @ self._anchors)[..., 0]
        jacobian = np.empty((len(tcp), 6, axes.shape[1]))
        # the cross products a × lever, one component row at a time (np.cross costs more for 3-vectors)
        for row, (i, k) in enumerate(((1, 2), (2, 0), (0, 1))):
            jacobian[:, row] = axes[..., i] * lever[..., k] - axes[..., k] * lever[..., i]
        jacobian[:, 3:] = np.swapaxes(axes, -1, -2)
        return tcp, jacobian

    def solve(
        self,
        targets: np.ndarray,
        q_init: np.ndarray,
        iterations: int = 5,
        damping: float = 0.05,
        rotation_weight: float = 0.3,
        clip_to_limits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """DLS IK of every arm towards its 4×4 TCP target: joint angles ``(N, 6)`` and the remaining
        pose errors ``(N,)``, with :func:`solve_ik`'s iteration, weighting, clipping and error."""
        weights = np.array([1.0, 1.0, 1.0, rotation_weight, rotation_weight, rotation_weight])
        regularizer = damping**2 * np.eye(6)
        target_position, target_rotation = targets[:, :3, 3], targets[:, :3, :3]
        q = np.array(q_init, dtype=np.float64)
        if clip_to_limits:
            q = np.clip(q, self.joint_low, self.joint_high)
        e = np.empty((len(q), 6))
        for it in range(iterations + 1):
            if it == iterations:
                pose = self.tcp_pose(q)
            else:
                pose, jacobian = self.tcp_pose_and_jacobian(q)
            np.subtract(target_position, pose[:, :3, 3], out=e[:, :3])
            e[:, 3:] = rotation_error(target_rotation, pose[:, :3, :3])
            e *= weights
            if it == iterations:
                break
            weighted = jacobian * weights[:, None]
            weighted_t = np.swapaxes(weighted, -1, -2)
            solution = np.linalg.solve(weighted @ weighted_t + regularizer, e[:, :, None])
            q = q + (weighted_t @ solution)[..., 0]
            if clip_to_limits:
                q = np.clip(q, self.joint_low, self.joint_high)
        return q, np.linalg.norm(e[:, :3], axis=1) + np.linalg.norm(e[:, 3:], axis=1)
