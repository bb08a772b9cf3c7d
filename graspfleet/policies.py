"""Policies that drive grasp cells without learning, through the Cartesian action pipeline.

:class:`ScriptedGraspPolicy` is the conservative controller (approach above the target,
descend, close with a force limit, lift): the fallback the guardian switches to, and the proof
that the cell is graspable. :class:`ReactiveGraspPolicy` grasps by a rule on the current
observation alone (no state), so a learner can imitate it and it can label any observation. Both
read the target's pose from the ``privileged`` observation, as a scripted expert may, and the
arm's pose from the measured joints. :class:`RandomCartesianPolicy` emits random twists and
gripper commands. All emit Cartesian actions ``(ρ, ω, width, force)`` for
:class:`graspfleet.actions.cartesian.CartesianBackend`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

import numpy as np

from graspfleet.actions.config import ActionConfig
from graspfleet.geometry import se3
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import ArmChain, ArmKinematics, BatchArmKinematics, top_down_rotation
from graspfleet.sim.reward import GRAVITY
from graspfleet.spec import MASK_KEY, MODALITIES, PROPRIO_FIELDS


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


def limit_twist(twist: np.ndarray, config: ActionConfig) -> np.ndarray:
    """Scale twists' ``(…, 6)`` translation and rotation parts back to the pipeline's per-step limits."""
    rho, omega = twist[..., :3], twist[..., 3:]

    def scale(part: np.ndarray, limit: float) -> np.ndarray:
        return np.minimum(1.0, limit / np.maximum(np.linalg.norm(part, axis=-1, keepdims=True), 1e-12))

    return np.concatenate(
        [rho * scale(rho, config.max_translation_step), omega * scale(omega, config.max_rotation_step)], axis=-1
    )


@dataclasses.dataclass(frozen=True)
class GripForce:
    """The force per jaw (N) an expert commands: ``safety`` times the friction-limited holding
    force ``m·g/(2μ)`` of each row's target (mass and friction from ``privileged``), within
    ``[low, high]``: enough to hold, not enough to crush."""

    safety: float
    low: float
    high: float

    @classmethod
    def for_gripper(cls, config: CellConfig, safety: float, low: float, high: float) -> GripForce:
        """The bounds cut to what the cell's gripper can apply."""
        high = min(high, config.gripper.max_force)
        return cls(safety, min(low, high), high)

    def __call__(self, privileged: np.ndarray) -> np.ndarray:
        mass, friction = privileged[:, 7], np.maximum(privileged[:, 8], 1e-3)
        return np.clip(self.safety * mass * GRAVITY / (2.0 * friction), self.low, self.high)


class ScriptedGraspPolicy:
    """Top-down grasp by moving waypoints, one state machine per cell.

    Each step the waypoint advances towards the phase's goal at ``tcp_speed``; the action is
    the twist from the measured TCP pose to the waypoint (pointing down, yawed to the object's
    faces), kept within the pipeline's step limits, plus the gripper command.
    """

    def __init__(
        self,
        config: CellConfig,
        num_cells: int,
        action_config: ActionConfig | None = None,
        approach_height: float = 0.12,
        lift_height: float = 0.15,
        tcp_speed: float = 0.5,
        max_grip_force: float = 15.0,
        min_grip_force: float = 4.0,
        grip_safety: float = 2.5,
        close_steps: int = 12,
        tolerance: float = 0.01,
        min_grasp_height: float = 0.03,
    ) -> None:
        """Heights in m, speed in m/s, forces per jaw in N; ``min_grasp_height`` keeps the
        fingertips off the table. The grip force is ``grip_safety`` times the friction-limited
        holding force ``m·g/(2μ)`` of the target (from the privileged state), kept within
        ``[min_grip_force, max_grip_force]``: enough to hold, not enough to crush."""
        self.config = config
        self.action_config = action_config or ActionConfig()
        self.num_cells = num_cells
        self.approach_height = approach_height
        self.lift_height = lift_height
        self.step_length = tcp_speed * config.physics.control_period
        self.grip_force = GripForce.for_gripper(config, grip_safety, min_grip_force, max_grip_force)
        self.close_steps = close_steps
        self.tolerance = tolerance
        self.min_grasp_height = min_grasp_height
        self.kinematics = ArmKinematics(config)
        self.phase = np.zeros(num_cells, dtype=np.int64)
        self.phase_steps = np.zeros(num_cells, dtype=np.int64)
        self.waypoint = np.full((num_cells, 3), np.nan)
        self.yaw = np.zeros(num_cells)
        self.lift_goal = np.zeros(num_cells)

    def reset(self, which: np.ndarray) -> None:
        """Restart the state machine of the cells where ``which`` is true."""
        self.phase[which] = Phase.APPROACH
        self.phase_steps[which] = 0
        self.waypoint[which] = np.nan

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Cartesian actions ``(num_cells, 8)`` for the current observation."""
        actions = np.zeros((self.num_cells, 8))
        privileged = obs["privileged"].astype(np.float64)
        joints = obs["proprio"][:, :6].astype(np.float64)
        for i in range(self.num_cells):
            tcp = self.kinematics.tcp_pose(joints[i])
            target = privileged[i, :3]
            if np.isnan(self.waypoint[i, 0]):
                self.waypoint[i] = tcp[:3, 3]
                self.yaw[i] = grasp_yaw(privileged[i, 3:7])
            grasp_z = max(target[2], self.min_grasp_height)
            phase = Phase(self.phase[i])
            if phase == Phase.APPROACH:
                goal = np.array([target[0], target[1], grasp_z + self.approach_height])
            elif phase == Phase.DESCEND:
                goal = np.array([target[0], target[1], grasp_z])
            elif phase == Phase.CLOSE:
                goal = self.waypoint[i].copy()
            else:
                goal = np.array([self.waypoint[i, 0], self.waypoint[i, 1], self.lift_goal[i]])
            delta = goal - self.waypoint[i]
            distance = float(np.linalg.norm(delta))
            if distance > self.step_length:
                delta *= self.step_length / distance
            self.waypoint[i] += delta
            waypoint_pose = se3.make_pose(top_down_rotation(self.yaw[i]), self.waypoint[i])
            actions[i, :6] = limit_twist(se3.twist_between_at_point(tcp, waypoint_pose), self.action_config)
            reached = distance <= self.step_length and float(np.linalg.norm(tcp[:3, 3] - goal)) < self.tolerance
            self.phase_steps[i] += 1
            if phase == Phase.APPROACH and reached:
                self._advance(i, Phase.DESCEND)
            elif phase == Phase.DESCEND and reached:
                self._advance(i, Phase.CLOSE)
            elif phase == Phase.CLOSE and self.phase_steps[i] >= self.close_steps:
                self.lift_goal[i] = self.waypoint[i, 2] + self.lift_height
                self._advance(i, Phase.LIFT)
            actions[i, 6] = 0.0 if self.phase[i] >= Phase.CLOSE else self.config.gripper.max_width
        actions[:, 7] = self.grip_force(privileged)
        return actions

    def _advance(self, cell: int, phase: Phase) -> None:
        self.phase[cell] = phase
        self.phase_steps[cell] = 0


class ReactiveGraspPolicy:
    """Top-down grasp as a function of the current observation alone: no phase, timer or waypoint.

    Each cell's command is decided afresh every step from what it measures (TCP pose from the
    joints; the finger pads' pressure from ``tactile``) and the target's pose and mass from
    ``privileged``, in this order:

    - **carry**: both pads press (peak taxel ≥ ``contact_pressure``) → keep closing and raise the
      TCP to ``carry_height``;
    - **close**: the TCP is within ``tolerance`` of the grasp point, or one pad presses → close
      and hold the TCP where it is;
    - **descend**: the TCP is within ``capture_radius`` of the target horizontally → open, move
      to the grasp point;
    - **approach**: otherwise → open, move to ``approach_height`` above the grasp point.

    Where a cell's tactile reading is missing (``mask``), a grip counts as holding when the grip
    force reaches ``settle_fraction`` of the command at a width between ``empty_width`` and
    open — weaker: the finger force also reads high while the fingers still move.

    The twist points the TCP down, yawed to the object's faces (:meth:`grasp_yaw`), towards the
    goal at most ``tcp_speed`` per step and within the pipeline's limits. Because the action
    depends on the observation only, a policy that sees the same things can represent it exactly,
    which a learner imitating it needs (docs/experiments/2026-12-07-critic-input-utd-and-shaping.md),
    and a dropped or missed grasp is retried, not carried to the episode's end.
    """

    def __init__(
        self,
        config: CellConfig,
        num_cells: int,
        action_config: ActionConfig | None = None,
        approach_height: float = 0.12,
        carry_height: float = 0.2,
        tcp_speed: float = 0.5,
        max_grip_force: float = 15.0,
        min_grip_force: float = 4.0,
        grip_safety: float = 2.5,
        settle_fraction: float = 0.9,
        contact_pressure: float = 10.0,
        empty_width: float = 0.005,
        tolerance: float = 0.01,
        capture_radius: float = 0.02,
        min_grasp_height: float = 0.03,
        upright_cosine: float = 0.95,
    ) -> None:
        """Heights in m above the table, speed in m/s, forces per jaw in N, widths in m, pressure in
        kPa (no-contact readings are below 1 kPa, a grip's peak taxels 50–400 kPa). The grip
        force is :class:`GripForce` with ``grip_safety``, ``min_grip_force``, ``max_grip_force``."""
        self.config = config
        self.action_config = action_config or ActionConfig()
        self.num_cells = num_cells
        self.approach_height = approach_height
        self.carry_height = carry_height
        self.step_length = tcp_speed * config.physics.control_period
        self.grip_force = GripForce.for_gripper(config, grip_safety, min_grip_force, max_grip_force)
        self.settle_fraction = settle_fraction
        self.contact_pressure = contact_pressure
        self.empty_width = empty_width
        self.tolerance = tolerance
        self.capture_radius = capture_radius
        self.min_grasp_height = min_grasp_height
        self.upright_cosine = upright_cosine
        self.kinematics = BatchArmKinematics(ArmChain.from_cell(config))

    def reset(self, which: np.ndarray) -> None:
        """Nothing to forget: the policy is memoryless."""

    def grasp_yaw(self, quat_wxyz: np.ndarray, tcp_rotation: np.ndarray) -> np.ndarray:
        """TCP yaw (rad) ``(N,)`` to close across each object's faces, from the object's
        orientations ``(N, 4)`` and the TCP's ``(N, 3, 3)``: of the object's four face-aligned
        yaws, the one nearest the TCP's yaw now, so the wrist turns at most π/4; an object that is
        not upright (a ball that rolled, a toppled cylinder: its z axis more than
        ``acos(upright_cosine)`` from vertical) keeps the TCP's yaw."""
        w, x, y, z = quat_wxyz.T
        object_yaw = np.arctan2(2.0 * (x * y + w * z), 1.0 - 2.0 * (y * y + z * z))
        upright = 1.0 - 2.0 * (x * x + y * y) >= self.upright_cosine
        tcp_yaw = np.arctan2(-tcp_rotation[:, 0, 1], tcp_rotation[:, 1, 1])
        turn = (object_yaw - tcp_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4
        return tcp_yaw + np.where(upright, turn, 0.0)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Cartesian actions ``(N, 8)`` for observations of N cells (any N: the same rule labels
        a batch of replay rows as it drives ``num_cells`` cells)."""
        privileged = obs["privileged"].astype(np.float64)
        proprio = obs["proprio"].astype(np.float64)
        width = proprio[:, PROPRIO_FIELDS.index("gripper_width")]
        force = proprio[:, PROPRIO_FIELDS.index("grip_force")]
        tcp = self.kinematics.tcp_pose(proprio[:, :6])
        position = tcp[:, :3, 3]
        grasp = privileged[:, :3].copy()
        grasp[:, 2] = np.maximum(grasp[:, 2], self.min_grasp_height)
        command_force = self.grip_force(privileged)

        peak = obs["tactile"].reshape(len(privileged), 2, -1).max(axis=2)
        touching = peak >= self.contact_pressure
        felt = obs[MASK_KEY][:, MODALITIES.index("tactile")].astype(bool)
        gripped = (force >= self.settle_fraction * command_force) & (width > self.empty_width)
        gripped &= width < self.config.gripper.max_width - self.empty_width
        holding = np.where(felt, touching.all(axis=1), gripped)
        pressing = felt & touching.any(axis=1)
        aligned = np.linalg.norm(position[:, :2] - grasp[:, :2], axis=1) < self.capture_radius
        at_grasp = aligned & (np.abs(position[:, 2] - grasp[:, 2]) < self.tolerance)
        closing = ~holding & (at_grasp | pressing)
        descending = ~holding & ~closing & aligned

        goal = grasp.copy()
        goal[:, 2] += self.approach_height
        goal[descending] = grasp[descending]
        goal[closing] = position[closing]
        goal[holding] = position[holding]
        goal[holding, 2] = self.carry_height
        delta = goal - position
        distance = np.linalg.norm(delta, axis=1, keepdims=True)
        goal = position + delta * np.minimum(1.0, self.step_length / np.maximum(distance, 1e-12))

        goal_pose = np.zeros_like(tcp)
        goal_pose[:, :3, :3] = top_down_rotation(self.grasp_yaw(privileged[:, 3:7], tcp[:, :3, :3]))
        goal_pose[:, :3, 3] = goal
        goal_pose[:, 3, 3] = 1.0
        actions = np.zeros((len(privileged), 8))
        actions[:, :6] = limit_twist(se3.twist_between_at_point(tcp, goal_pose), self.action_config)
        actions[:, 6] = np.where(holding | closing, 0.0, self.config.gripper.max_width)
        actions[:, 7] = command_force
        return actions


class RandomCartesianPolicy:
    """Gaussian twists (σ = the per-step limits, so some exceed them) and uniform gripper commands."""

    def __init__(
        self, config: CellConfig, num_cells: int, action_config: ActionConfig | None = None, seed: int | None = None
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.config = config
        self.action_config = action_config or ActionConfig()
        self.num_cells = num_cells

    def reset(self, which: np.ndarray) -> None:
        """Nothing to forget: the policy is memoryless."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Random Cartesian actions ``(num_cells, 8)``."""
        a = self.action_config
        scale = np.array([a.max_translation_step] * 3 + [a.max_rotation_step] * 3)
        twist = self.rng.normal(0.0, 1.0, (self.num_cells, 6)) * scale
        gripper = self.rng.uniform(
            [0.0, 0.0], [self.config.gripper.max_width, self.config.gripper.max_force], (self.num_cells, 2)
        )
        return np.concatenate([twist, gripper], axis=1)


ExpertKind = Literal["waypoint", "reactive"]
EXPERTS: tuple[ExpertKind, ...] = ("waypoint", "reactive")


def make_expert(
    kind: ExpertKind, config: CellConfig, num_cells: int, action_config: ActionConfig | None = None
) -> ScriptedGraspPolicy | ReactiveGraspPolicy:
    """The scripted expert named ``kind``: ``waypoint`` (:class:`ScriptedGraspPolicy`, a state
    machine on moving waypoints) or ``reactive`` (:class:`ReactiveGraspPolicy`, memoryless)."""
    if kind == "waypoint":
        return ScriptedGraspPolicy(config, num_cells, action_config)
    if kind == "reactive":
        return ReactiveGraspPolicy(config, num_cells, action_config)
    raise ValueError(f"expert: expected one of {EXPERTS}, got {kind!r}")
