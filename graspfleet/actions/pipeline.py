"""The one action pipeline every actor, simulated or real, goes through (method.md §5).

A Cartesian policy output per cell, ``(ρ, ω, width, force)``: a twist ξ ∈ se(3) for the TCP (m,
rad per control step, in a frame at the TCP with world axes), gripper width (m) and grip force
per jaw (N), becomes a joint command in these stages:

1. **finite check**: NaN/Inf raises ``ValueError`` naming cell and field (``strict``), or, in the
   actor runtime, turns into a counted hold; it is never passed on;
2. **bounds**: a twist longer than the per-step limits is scaled back along its direction,
   width/force are saturated to the gripper's range (each counted as an out-of-bounds proposal,
   as is a raw IK proposal outside the joint limits);
3. **target pose** ``Exp(ξ) ∘ T_current``;
4. **DLS IK** (Jacobian-transpose form, ~5 iterations) from the measured joints, unconstrained:
   the raw proposal;
5. **joint increment** normalized to [−1, 1] by the joint-step limit (scaled uniformly when any
   component exceeds it, flagged ``speed_limited``) and mapped through the joint-limit matrix:
   each joint moves at most its step and never past its limit, so the command is inside the
   limits by construction;
6. **reachability**: the commanded TCP must lie in the workspace box and σ_min(J) > 0.08;
7. **safe-action cache**: if the command fails 6, or extrapolating this cycle's motion one more
   cycle would come within ``limit_margin`` of a joint limit, the previous command is held
   (zero-order hold), a slow-down is signalled, and the hold and its cycle time are counted;
8. **pose command**: the TCP pose the final joint command realizes, as ROS position + quaternion
   ``(x, y, z, w)`` whose sign is locked to the previous command (q and −q never alternate).

Every stage is vectorized over cells, IK and the reachability check included
(:class:`~graspfleet.sim.kinematics.BatchArmKinematics`: the arm's chain from the MuJoCo model,
held to MuJoCo's kinematics by tests).
"""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np

from graspfleet.actions.config import ActionConfig
from graspfleet.geometry import se3
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import ArmChain, BatchArmKinematics

CARTESIAN_FIELDS: Final = ("rho_x", "rho_y", "rho_z", "omega_x", "omega_y", "omega_z", "gripper_width", "grip_force")
"""Layout of a Cartesian action: twist (m, rad per control step), width (m), force per jaw (N)."""


@dataclasses.dataclass
class PipelineStep:
    """What the pipeline decided for a batch of cells in one control step."""

    joint_action: np.ndarray
    """Low-level actions ``(N, 8)``: joint targets (rad), width (m), force (N); inside all limits."""
    pose_command: np.ndarray
    """ROS-order TCP pose ``(N, 7)`` (x, y, z, qx, qy, qz, qw) that the joint command realizes,
    the quaternion's sign locked to the cell's previous command."""
    out_of_bounds_proposed: np.ndarray
    """The policy's output exceeded its bounds (twist step, gripper range) or its raw IK
    proposal lay outside the joint limits."""
    proposed_outside_joint_limits: np.ndarray
    """The raw IK proposal lay outside the joint limits."""
    speed_limited: np.ndarray
    """The joint increment exceeded the per-step limit and was scaled back (rate limiting)."""
    held: np.ndarray
    """The previous command was held (zero-order hold)."""
    slowdown: np.ndarray
    """The slow-down signal is raised (a hold happened within the last ``slowdown_cycles``)."""
    nonfinite: np.ndarray
    """The policy output had NaN/Inf (only without ``strict``; always held)."""
    unreachable: np.ndarray
    """The command failed the workspace or σ_min check (held)."""


_ROUNDING: Final = 1.0 + 1e-9
"""Relative slack on the twist limits, so a twist scaled to its limit is not flagged."""


def _norm(vectors: np.ndarray) -> np.ndarray:
    """Row norms that do not overflow for entries up to the largest float."""
    peak = np.abs(vectors).max(axis=1)
    safe = np.where(peak > 0, peak, 1.0)
    return peak * np.linalg.norm(vectors / safe[:, None], axis=1)


class SafeActionPipeline:
    """Turns Cartesian policy outputs into joint commands that are always inside the limits."""

    def __init__(self, cell: CellConfig, config: ActionConfig, num_cells: int) -> None:
        self.cell = cell
        self.config = config
        self.num_cells = num_cells
        self.kinematics = BatchArmKinematics(ArmChain.from_cell(cell))
        self.low = self.kinematics.joint_low
        self.high = self.kinematics.joint_high
        self.previous = np.zeros((num_cells, 8))
        self.previous_quaternion = np.zeros((num_cells, 4))
        self.slowdown_left = np.zeros(num_cells, dtype=np.int64)
        self.holds = np.zeros(num_cells, dtype=np.int64)
        """Holds per cell since construction."""
        self.steps = np.zeros(num_cells, dtype=np.int64)
        self._has_command = np.zeros(num_cells, dtype=bool)

    @property
    def hold_seconds(self) -> np.ndarray:
        """Cycle time lost to holds per cell (s): each hold costs one control period of progress."""
        return self.holds * self.cell.physics.control_period

    def reset(self, which: np.ndarray, joints: np.ndarray) -> None:
        """Start over in the cells of ``which``, holding at measured ``joints`` with the gripper open."""
        rows = np.flatnonzero(which)
        self.previous[rows, :6] = np.clip(joints[rows], self.low, self.high)
        self.previous[rows, 6] = self.cell.gripper.max_width
        self.previous[rows, 7] = 0.0
        self.slowdown_left[rows] = 0
        self._has_command[rows] = False

    def validate(self, actions: np.ndarray) -> np.ndarray:
        """Shape-check and return float64 actions; NaN/Inf raise ValueError naming cell and field."""
        arr = np.asarray(actions, dtype=np.float64)
        if arr.shape != (self.num_cells, len(CARTESIAN_FIELDS)):
            raise ValueError(
                f"cartesian action: expected shape ({self.num_cells}, {len(CARTESIAN_FIELDS)}) "
                f"[{', '.join(CARTESIAN_FIELDS)}], got {arr.shape}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            cell, field = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"cartesian action[{cell}].{CARTESIAN_FIELDS[field]} is {arr[cell, field]} (must be finite)"
            )
        return arr

    def __call__(self, actions: np.ndarray, joints: np.ndarray, strict: bool = True) -> PipelineStep:
        """Commands for Cartesian ``actions`` ``(N, 8)`` given measured ``joints`` ``(N, 6)`` (rad).

        With ``strict`` a non-finite action raises ``ValueError``; without it (the actor runtime)
        that cell holds its previous command and the step is flagged ``nonfinite``.
        """
        cfg = self.config
        n = self.num_cells
        raw = np.asarray(actions, dtype=np.float64)
        if strict:
            raw = self.validate(raw)
        elif raw.shape != (n, len(CARTESIAN_FIELDS)):
            self.validate(raw)
        nonfinite = ~np.all(np.isfinite(raw), axis=1)
        act = np.where(nonfinite[:, None], 0.0, raw)
        q_now = np.clip(np.asarray(joints, dtype=np.float64), self.low, self.high)

        # 2. bounds on the policy's own output
        rho, omega = act[:, :3], act[:, 3:6]
        rho_norm = _norm(rho)
        omega_norm = _norm(omega)
        # A twist scaled to exactly its limit may come back a rounding error above it.
        rho_scale = np.minimum(1.0, cfg.max_translation_step * _ROUNDING / np.maximum(rho_norm, 1e-300))
        omega_scale = np.minimum(1.0, cfg.max_rotation_step * _ROUNDING / np.maximum(omega_norm, 1e-300))
        twist = np.concatenate([rho * rho_scale[:, None], omega * omega_scale[:, None]], axis=1)
        gripper = self.cell.gripper
        width = np.clip(act[:, 6], 0.0, gripper.max_width)
        force = np.clip(act[:, 7], 0.0, gripper.max_force)
        out_of_bounds = (rho_scale < 1.0) | (omega_scale < 1.0) | (width != act[:, 6]) | (force != act[:, 7])

        # 3.–4. target pose and unconstrained IK
        targets = se3.apply_twist_at_point(twist, self.kinematics.tcp_pose(q_now))
        proposal, _ = self.kinematics.solve(
            targets, q_now, cfg.ik_iterations, cfg.ik_damping, cfg.ik_rotation_weight, clip_to_limits=False
        )
        outside_limits = np.any((proposal < self.low) | (proposal > self.high), axis=1) & ~nonfinite

        # 5. normalized joint increment through the joint-limit matrix
        step_limit = cfg.max_joint_step * np.where(self.slowdown_left > 0, cfg.slowdown_factor, 1.0)
        normalized = (proposal - q_now) / step_limit[:, None]
        peak = np.abs(normalized).max(axis=1)
        too_fast = peak > 1.0
        normalized /= np.maximum(peak, 1.0)[:, None]
        room_up = np.minimum(step_limit[:, None], self.high - q_now)
        room_down = np.minimum(step_limit[:, None], q_now - self.low)
        command = q_now + np.where(normalized >= 0, normalized * room_up, normalized * room_down)
        out_of_bounds |= outside_limits
        out_of_bounds &= ~nonfinite

        # 6. reachability of the command
        checked = np.flatnonzero(~nonfinite)
        command_poses, jacobians = self.kinematics.tcp_pose_and_jacobian(command)
        positions = command_poses[checked, :3, 3]
        inside = np.ones(len(checked), dtype=bool)
        for axis, bounds in enumerate((cfg.workspace_x, cfg.workspace_y, cfg.workspace_z)):
            inside &= (positions[:, axis] >= bounds.low) & (positions[:, axis] <= bounds.high)
        sigma_min = np.linalg.svd(jacobians[checked], compute_uv=False)[:, -1]
        unreachable = np.zeros(n, dtype=bool)
        unreachable[checked] = ~inside | (sigma_min <= cfg.min_singular_value)

        # 7. safe-action cache: zero-order hold when the next cycle would breach a limit
        extrapolated = command + (command - self.previous[:, :6])
        breach = np.any(
            (extrapolated < self.low + cfg.limit_margin) & (extrapolated < command)
            | (extrapolated > self.high - cfg.limit_margin) & (extrapolated > command),
            axis=1,
        )
        held = nonfinite | unreachable | breach
        joint_action = np.concatenate([command, width[:, None], force[:, None]], axis=1)
        joint_action[held] = self.previous[held]
        self.slowdown_left = np.where(held, cfg.slowdown_cycles, np.maximum(self.slowdown_left - 1, 0))
        slowdown = self.slowdown_left > 0
        self.holds += held
        self.steps += 1
        self.previous = joint_action.copy()

        # The pose command is the pose the (safe) joint command realizes, sign-locked per cell.
        poses = command_poses
        if held.any():
            poses[held] = self.kinematics.tcp_pose(joint_action[held, :6])
        commands = se3.pose_command(poses, None)
        commands[:, 3:] = np.where(
            self._has_command[:, None],
            se3.lock_quaternion_sign(commands[:, 3:], self.previous_quaternion),
            commands[:, 3:],
        )
        self.previous_quaternion = commands[:, 3:].copy()
        self._has_command[:] = True
        return PipelineStep(
            joint_action=joint_action,
            pose_command=commands,
            out_of_bounds_proposed=out_of_bounds,
            proposed_outside_joint_limits=outside_limits,
            speed_limited=too_fast & ~nonfinite,
            held=held,
            slowdown=slowdown,
            nonfinite=nonfinite,
            unreachable=unreachable,
        )
