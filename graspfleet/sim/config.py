"""Configuration of a grasp cell: physics, sensors, reward, outcome rules and scene tiers.

The method's numbers (reward weights 0.6/0.3/0.1, the −10·(1 − s) manipulability and
−5·log barrier weights, the σ_min > 0.08 reachability margin, the 3σ outlier reject,
~30 % modality dropout) are the defaults here, under their names.
"""

from __future__ import annotations

import dataclasses
import math

from graspfleet.config import ConfigError, Range, require
from graspfleet.sim.randomization import DomainRandomization

SHAPES = ("cube", "cylinder", "ball")
"""Object shapes a scene can contain; also the instruction's shape words."""

COLOURS = {
    "red": 0.0,
    "orange": 0.08,
    "yellow": 0.16,
    "green": 0.33,
    "blue": 0.62,
    "purple": 0.78,
}
"""Named object colours and their hue (fraction of the colour wheel)."""


@dataclasses.dataclass(frozen=True)
class PhysicsConfig:
    """Integration and control timing."""

    timestep: float = 0.002
    """Physics step (s)."""
    control_substeps: int = 20
    """Physics steps per control step; the control period is ``timestep · control_substeps``."""

    def __post_init__(self) -> None:
        require(0 < self.timestep <= 0.01, f"timestep: must be in (0, 0.01] s, got {self.timestep}")
        require(
            self.control_substeps >= 1,
            f"control_substeps: must be >= 1, got {self.control_substeps}",
        )

    @property
    def control_period(self) -> float:
        """Seconds per control step."""
        return self.timestep * self.control_substeps


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """The ray-cast RGB-D camera (no GL, no display)."""

    height: int = 32
    width: int = 32
    vertical_fov_deg: float = 55.0
    position: tuple[float, float, float] = (0.42, 0.0, 0.62)
    """Nominal optical centre in the world frame (m)."""
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Point the optical axis passes through (m)."""
    max_depth: float = 2.0
    """Depth reported where a ray hits nothing (m)."""

    def __post_init__(self) -> None:
        require(1 <= self.height <= 512, f"camera.height: must be in [1, 512], got {self.height}")
        require(1 <= self.width <= 512, f"camera.width: must be in [1, 512], got {self.width}")
        require(0 < self.vertical_fov_deg < 170, f"camera.vertical_fov_deg: got {self.vertical_fov_deg}")
        require(self.max_depth > 0, f"camera.max_depth: must be > 0, got {self.max_depth}")
        require(self.position != self.look_at, "camera.look_at: must differ from camera.position")


@dataclasses.dataclass(frozen=True)
class SensorNoiseConfig:
    """Nominal standard deviation of each sensor's additive Gaussian noise.

    Scaled per episode by ``DomainRandomization.sensor_noise_scale``.
    """

    depth: float = 0.002
    """m"""
    imu_accel: float = 0.05
    """m/s²"""
    imu_gyro: float = 0.005
    """rad/s"""
    joint_position: float = 0.0005
    """rad"""
    joint_velocity: float = 0.005
    """rad/s"""
    tactile: float = 0.2
    """kPa"""
    rgb: float = 2.0
    """intensity levels out of 255"""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            require(value >= 0 and math.isfinite(value), f"noise.{f.name}: must be >= 0, got {value}")


@dataclasses.dataclass(frozen=True)
class ObservationConfig:
    """Shapes and noise of the multimodal observation."""

    camera: CameraConfig = CameraConfig()
    tactile_rows: int = 8
    tactile_cols: int = 8
    instruction_length: int = 8
    """Token ids per instruction, right-padded with the pad id 0."""
    noise: SensorNoiseConfig = SensorNoiseConfig()

    def __post_init__(self) -> None:
        require(self.tactile_rows >= 1 and self.tactile_cols >= 1, "tactile_rows/cols: must be >= 1")
        require(self.instruction_length >= 5, "instruction_length: must be >= 5 tokens")


@dataclasses.dataclass(frozen=True)
class GripperConfig:
    """The parallel-jaw gripper's command ranges."""

    max_width: float = 0.09
    """Largest opening between the pads (m)."""
    max_force: float = 60.0
    """Largest grip-force limit a command may set, per jaw (N)."""
    finger_stiffness: float = 3000.0
    """Position-servo stiffness of each finger (N/m): stiff enough that a finger blocked by an
    object a few millimetres short of its target pushes at the commanded force limit."""

    def __post_init__(self) -> None:
        require(
            0 < self.max_width <= 0.09,
            f"gripper.max_width: must be in (0, 0.09] m, got {self.max_width}",
        )
        require(self.max_force > 0, f"gripper.max_force: must be > 0 N, got {self.max_force}")
        require(self.finger_stiffness > 0, "gripper.finger_stiffness: must be > 0")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Reward terms; see docs/architecture.md for the formulas.

    ``r = r_task − manipulability_weight·(1 − s) − joint_limit_barrier_weight·B(d_bound)``
    with ``r_task = position_weight·r_pos + force_weight·r_force + slip_weight·r_slip
    + r_stability + success_bonus·[success] − collision_penalty·[collision]``.
    """

    position_weight: float = 0.6
    """method.md §3: weight of r_pos in the composite reward."""
    force_weight: float = 0.3
    """method.md §3: weight of r_force."""
    slip_weight: float = 0.1
    """method.md §3: weight of r_slip."""
    reach_scale: float = 0.1
    """Distance at which the reach part of r_pos falls to 1 − tanh(1) (m)."""
    hold_force_safety: float = 2.0
    """r_force's band starts at this multiple of the friction-limited holding force."""
    slip_speed_scale: float = 0.05
    """Object-vs-gripper speed at which r_slip falls to 1/e (m/s)."""
    vibration_weight: float = 0.02
    """Weight of the IMU vibration level in r_stability (per m/s²)."""
    vibration_cutoff_hz: float = 5.0
    """Cut-off of the one-pole low-pass on the vibration channel (Hz)."""
    vibration_baseline_hz: float = 1.0
    """Cut-off of the slow mean removed from the accelerometer before measuring vibration (Hz)."""
    outlier_sigma: float = 3.0
    """method.md §4: vibration samples further than this many σ from the running mean are rejected."""
    vibration_sigma_floor: float = 0.05
    """Smallest σ the outlier test uses (m/s²), so a still arm does not reject its own noise."""
    manipulability_weight: float = 10.0
    """method.md §4: weight of (1 − s), s the manipulability margin."""
    manipulability_sigma_ref: float = 0.08
    """Smallest singular value of the 6×6 TCP Jacobian at which s reaches 1 (method.md §5's 0.08)."""
    joint_limit_barrier_weight: float = 5.0
    """method.md §4: weight of the log barrier on the distance to the nearest joint limit."""
    joint_limit_margin: float = 0.15
    """δ: the barrier is zero farther than this from every joint limit (rad)."""
    joint_limit_floor: float = 1e-3
    """The barrier treats distances below this as this, so it stays finite at the bound (rad)."""
    success_bonus: float = 100.0
    """Paid once when the episode ends in success. Every other step pays up to ~1 of task reward,
    so the bonus is at least the value of continuing, ≈ 1/(1 − γ) = 100 at γ = 0.99: below it a
    learner gains by dawdling rather than finishing (docs/experiments/2026-11-learning-on-T0.md)."""
    collision_penalty: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            require(
                math.isfinite(value) and value >= 0,
                f"reward.{f.name}: must be finite and >= 0, got {value}",
            )
        require(self.reach_scale > 0 and self.slip_speed_scale > 0, "reward scales must be > 0")
        require(self.manipulability_sigma_ref > 0, "reward.manipulability_sigma_ref: must be > 0")
        require(
            0 < self.joint_limit_floor < self.joint_limit_margin,
            "reward.joint_limit_floor: must be in (0, joint_limit_margin)",
        )
        require(self.outlier_sigma > 0, "reward.outlier_sigma: must be > 0")
        require(
            0 < self.vibration_baseline_hz < self.vibration_cutoff_hz,
            "reward.vibration_baseline_hz: must be in (0, vibration_cutoff_hz)",
        )


@dataclasses.dataclass(frozen=True)
class OutcomeConfig:
    """When an episode counts as a success, collision, slip or force overshoot."""

    lift_height: float = 0.08
    """Height above its resting height the target must reach (m)."""
    hold_steps: int = 10
    """Consecutive control steps the target must stay lifted, grasped and not slipping."""
    slip_speed: float = 0.05
    """Object-vs-gripper speed above which a grasped object is slipping (m/s)."""
    slip_clearance: float = 0.01
    """Height above its rest at which a grasped object is held off the table; losing or
    slipping it from there is a slip (m)."""
    collision_force: float = 20.0
    """Contact normal force of the arm on the table, or of a non-finger link on an object (N)."""
    max_safe_grip_force: float = 35.0
    """Total pad normal force above which the object is crushed: a force overshoot (N)."""
    grasp_contact_force: float = 0.5
    """Normal force each pad must exert on the target for it to count as grasped (N)."""
    fall_height: float = -0.05
    """Target centre height below which it has fallen off the table and the episode ends (m)."""
    max_episode_steps: int = 200
    terminate_on_collision: bool = True

    def __post_init__(self) -> None:
        require(self.lift_height > 0, f"outcome.lift_height: must be > 0 m, got {self.lift_height}")
        require(self.hold_steps >= 1, "outcome.hold_steps: must be >= 1")
        require(self.slip_speed > 0, "outcome.slip_speed: must be > 0")
        require(
            0 < self.slip_clearance < self.lift_height,
            "outcome.slip_clearance: must be in (0, lift_height)",
        )
        require(self.collision_force > 0, "outcome.collision_force: must be > 0")
        require(self.max_safe_grip_force > 0, "outcome.max_safe_grip_force: must be > 0")
        require(self.max_episode_steps >= 1, "outcome.max_episode_steps: must be >= 1")
        require(self.grasp_contact_force > 0, "outcome.grasp_contact_force: must be > 0")


@dataclasses.dataclass(frozen=True)
class TierConfig:
    """One difficulty tier: what is on the table, what the sensors suffer, how wide physics varies."""

    name: str
    description: str
    num_objects: int = 1
    """Objects in the scene; the instruction names one target, the rest are distractors."""
    shapes: tuple[str, ...] = ("cube",)
    colours: tuple[str, ...] = ("red",)
    object_half_size: Range = Range(0.025, 0.025)
    """Half the object's width across the grasp (m): cube half-side, cylinder and ball radius."""
    spawn_x: Range = Range(-0.02, 0.02)
    spawn_y: Range = Range(-0.02, 0.02)
    spawn_yaw: Range = Range(0.0, 0.0)
    """Object yaw about the vertical (rad)."""
    min_object_spacing: float = 0.09
    """Closest two objects' centres may be placed (m)."""
    occlusion_start_probability: float = 0.0
    """Per control step, chance that the camera becomes occluded."""
    occlusion_steps: int = 10
    """Control steps an occlusion lasts."""
    modality_dropout: float = 0.0
    """Per control step and modality, chance it is missing (seed: ~30 % under modal dropout)."""
    randomization: DomainRandomization = DomainRandomization()

    def __post_init__(self) -> None:
        require(bool(self.name), "tier.name: must not be empty")
        require(
            1 <= self.num_objects <= 6,
            f"{self.name}.num_objects: must be in [1, 6], got {self.num_objects}",
        )
        require(len(self.shapes) >= 1, f"{self.name}.shapes: must name at least one shape")
        for shape in self.shapes:
            require(
                shape in SHAPES,
                f"{self.name}.shapes: unknown shape {shape!r} (known: {', '.join(SHAPES)})",
            )
        require(len(self.colours) >= 1, f"{self.name}.colours: must name at least one colour")
        for colour in self.colours:
            require(
                colour in COLOURS,
                f"{self.name}.colours: unknown colour {colour!r} (known: {', '.join(COLOURS)})",
            )
        require(
            self.object_half_size.low >= 0.01 and self.object_half_size.high <= 0.04,
            f"{self.name}.object_half_size: must lie in [0.01, 0.04] m to fit the gripper",
        )
        require(
            self.spawn_x.low >= -0.3
            and self.spawn_x.high <= 0.3
            and self.spawn_y.low >= -0.3
            and self.spawn_y.high <= 0.3,
            f"{self.name}.spawn_x/spawn_y: must lie within ±0.3 m of the table centre",
        )
        require(
            0 <= self.occlusion_start_probability <= 1,
            f"{self.name}.occlusion_start_probability: must be in [0, 1]",
        )
        require(self.occlusion_steps >= 1, f"{self.name}.occlusion_steps: must be >= 1")
        require(0 <= self.modality_dropout < 1, f"{self.name}.modality_dropout: must be in [0, 1)")
        require(self.min_object_spacing > 0, f"{self.name}.min_object_spacing: must be > 0")
        if self.num_objects > 1:
            require(
                len(self.shapes) * len(self.colours) >= self.num_objects,
                f"{self.name}: {self.num_objects} objects need as many distinct (colour, shape) pairs "
                "so the instruction names one target",
            )


@dataclasses.dataclass(frozen=True)
class CellConfig:
    """Everything that defines a grasp cell except its tier."""

    physics: PhysicsConfig = PhysicsConfig()
    observation: ObservationConfig = ObservationConfig()
    gripper: GripperConfig = GripperConfig()
    reward: RewardConfig = RewardConfig()
    outcome: OutcomeConfig = OutcomeConfig()

    def __post_init__(self) -> None:
        if self.outcome.max_safe_grip_force > 2 * self.gripper.max_force:
            raise ConfigError("outcome.max_safe_grip_force: exceeds what the gripper can apply")
