"""One MuJoCo grasp cell: per-episode scene and physics randomization, stepping, sensing.

:class:`GraspCell` owns one model and its data. It writes raw measurements into rows of
the arrays a :class:`graspfleet.sim.batch.GraspCellBatch` hands it; everything that can be
computed for many cells at once (images, noise, reward, outcome) happens there.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import mujoco
import numpy as np

from graspfleet.sim.camera import RayCamera
from graspfleet.sim.config import COLOURS, CellConfig, TierConfig
from graspfleet.sim.instruction import encode, instruction_text
from graspfleet.sim.kinematics import solve_ik, top_down_rotation
from graspfleet.sim.model import (
    ARM_JOINTS,
    ARM_STIFFNESS,
    CYLINDER_HEIGHT_RATIO,
    GEOM_TYPE,
    CellIndex,
    cell_xml,
    geom_size,
    primitive_inertia,
    resting_height,
)
from graspfleet.sim.randomization import PhysicsSample, hsv_to_rgb

HOME_TCP_POSITION = np.array([0.0, 0.0, 0.25])
"""Where the TCP rests between episodes, pointing down (m)."""
_OBJECT_SATURATION = 0.9
_OBJECT_VALUE = 0.9
_PLACEMENT_TRIES = 200


class EpisodeScene(NamedTuple):
    """What one episode's table holds and how its physics was drawn."""

    shapes: tuple[str, ...]
    colours: tuple[str, ...]
    half_sizes: np.ndarray
    half_heights: np.ndarray
    positions: np.ndarray
    """Object centres, ``(n, 3)`` (m)."""
    yaws: np.ndarray
    target: int
    instruction: str
    physics: PhysicsSample


def sample_scene(tier: TierConfig, rng: np.random.Generator) -> EpisodeScene:
    """Draw one episode's objects, placement, target and physics from a tier."""
    n = tier.num_objects
    pairs = list(itertools.product(tier.colours, tier.shapes))
    chosen = rng.choice(len(pairs), size=n, replace=False) if n > 1 else [rng.integers(len(pairs))]
    colours = tuple(pairs[int(i)][0] for i in chosen)
    shapes = tuple(pairs[int(i)][1] for i in chosen)
    half_sizes = np.asarray(tier.object_half_size.sample(rng, n), dtype=np.float64)
    half_heights = np.where(np.array([s == "cylinder" for s in shapes]), half_sizes * CYLINDER_HEIGHT_RATIO, half_sizes)
    positions = np.zeros((n, 3))
    for i in range(n):
        for _ in range(_PLACEMENT_TRIES):
            xy = np.array([tier.spawn_x.sample(rng), tier.spawn_y.sample(rng)])
            if i == 0 or np.all(np.linalg.norm(positions[:i, :2] - xy, axis=1) >= tier.min_object_spacing):
                break
        else:
            raise RuntimeError(
                f"tier {tier.name}: could not place {n} objects {tier.min_object_spacing} m apart "
                "inside the spawn ranges"
            )
        positions[i, :2] = xy
        positions[i, 2] = resting_height(shapes[i], half_sizes[i], half_heights[i])
    yaws = np.asarray(tier.spawn_yaw.sample(rng, n), dtype=np.float64)
    target = int(rng.integers(n))
    return EpisodeScene(
        shapes=shapes,
        colours=colours,
        half_sizes=half_sizes,
        half_heights=half_heights,
        positions=positions,
        yaws=yaws,
        target=target,
        instruction=instruction_text(colours[target], shapes[target]),
        physics=tier.randomization.sample(rng),
    )


class GraspCell:
    """One grasp cell: a MuJoCo model recompiled per episode, its data, and a ray-cast camera."""

    def __init__(self, config: CellConfig, tier: TierConfig) -> None:
        self.config = config
        self.tier = tier
        self.spec = mujoco.MjSpec.from_string(cell_xml(config, tier.num_objects))
        self.model = self.spec.compile()
        self.data = mujoco.MjData(self.model)
        self.index = CellIndex.build(self.model, tier.num_objects)
        self.camera = RayCamera(config.observation.camera)
        self.home_qpos = home_configuration(config)
        self.scene: EpisodeScene | None = None
        self.rest_height = 0.0
        self.instruction_ids = np.zeros(config.observation.instruction_length, dtype=np.int32)
        self.light_rgb = np.ones(3)
        self.colour_table = np.ones((self.model.ngeom + 1, 3))
        self.transmitted_target = self.home_qpos.copy()
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))
        self._substeps = config.physics.control_substeps
        self._imu_adr = self.index.imu_sensor_adr

    # -- episode -----------------------------------------------------------------------------

    def reset(self, rng: np.random.Generator) -> EpisodeScene:
        """Start an episode: draw a scene, rebuild the model with its physics, pose everything."""
        scene = sample_scene(self.tier, rng)
        self._apply_scene(scene)
        self.model = self.spec.compile()
        # A fresh MjData per compiled model: reusing one across models (even of identical
        # sizes) silently breaks collision detection.
        self.data = mujoco.MjData(self.model)
        d, idx = self.data, self.index
        d.qpos[idx.arm_qpos] = self.home_qpos
        open_half = self.config.gripper.max_width / 2.0
        d.qpos[idx.finger_qpos] = open_half
        for slot in range(self.tier.num_objects):
            adr = idx.object_qpos[slot]
            d.qpos[adr : adr + 3] = scene.positions[slot]
            half_yaw = scene.yaws[slot] / 2.0
            d.qpos[adr + 3 : adr + 7] = [np.cos(half_yaw), 0.0, 0.0, np.sin(half_yaw)]
        d.ctrl[idx.arm_actuators] = self.home_qpos
        d.ctrl[idx.finger_actuators] = open_half
        self.transmitted_target = self.home_qpos.copy()
        mujoco.mj_forward(self.model, d)
        self.camera.set_pose(scene.physics.camera_position_jitter, scene.physics.camera_rotation_jitter)
        self.rest_height = float(scene.positions[scene.target, 2])
        self.instruction_ids = encode(scene.instruction, self.config.observation.instruction_length)
        self.light_rgb = hsv_to_rgb(scene.physics.light_hsv)
        table = np.empty((self.model.ngeom + 1, 3))
        table[:-1] = self.model.geom_rgba[:, :3]
        table[-1] = (0.78, 0.80, 0.84)  # background wall
        self.colour_table = table
        self.scene = scene
        return scene

    def _apply_scene(self, scene: EpisodeScene) -> None:
        physics = scene.physics
        for slot in range(self.tier.num_objects):
            shape = scene.shapes[slot]
            geom = self.spec.geom(f"object{slot}")
            geom.type = GEOM_TYPE[shape]
            geom.size = geom_size(shape, scene.half_sizes[slot], scene.half_heights[slot])
            geom.friction = [physics.object_friction, 0.005, 0.0001]
            hue = COLOURS[scene.colours[slot]] + physics.object_hue_jitter
            rgb = hsv_to_rgb(
                np.array(
                    [
                        hue % 1.0,
                        _OBJECT_SATURATION * physics.object_saturation_scale,
                        _OBJECT_VALUE * physics.object_value_scale,
                    ]
                )
            )
            geom.rgba = [*rgb, 1.0]
            body = self.spec.body(f"object{slot}")
            body.explicitinertial = True
            body.mass = physics.object_mass
            body.ipos = physics.object_com_offset
            body.inertia = primitive_inertia(
                shape, scene.half_sizes[slot], scene.half_heights[slot], physics.object_mass
            )
        for name in ARM_JOINTS:
            self.spec.joint(name).damping = physics.joint_damping
            actuator = self.spec.actuator(name)
            kp = ARM_STIFFNESS * physics.actuator_gain_scale
            actuator.gainprm[0] = kp
            actuator.biasprm[1] = -kp

    # -- stepping ----------------------------------------------------------------------------

    def act(self, joint_target: np.ndarray, width: float, force: float, imu_out: np.ndarray) -> None:
        """Apply one validated low-level action and advance one control step.

        Joint targets pass through the gear-backlash deadband: the transmitted target only
        moves once the command leaves a band of the episode's backlash width around it, so it
        always lies between the previous transmitted target and the command (inside the
        joint limits whenever both are). ``imu_out`` ``(T, 6)`` receives the accelerometer
        and gyro reading after every physics step.
        """
        assert self.scene is not None, "reset() before act()"
        half_play = self.scene.physics.backlash / 2.0
        self.transmitted_target = np.clip(self.transmitted_target, joint_target - half_play, joint_target + half_play)
        d, m, idx = self.data, self.model, self.index
        d.ctrl[idx.arm_actuators] = self.transmitted_target
        d.ctrl[idx.finger_actuators] = width / 2.0
        m.actuator_forcerange[idx.finger_actuators, 0] = -force
        m.actuator_forcerange[idx.finger_actuators, 1] = force
        adr = self._imu_adr
        for k in range(self._substeps):
            mujoco.mj_step(m, d)
            imu_out[k] = d.sensordata[adr : adr + 6]

    def cast(self, geom_id: np.ndarray, distance: np.ndarray) -> None:
        """Ray-cast the camera image into flat ``geom_id``/``distance`` rows."""
        self.camera.cast(self.model, self.data, geom_id, distance)

    def read(self, row: int, raw: RawState) -> None:
        """Copy this cell's state into row ``row`` of ``raw`` (the batch derives the rest)."""
        m, d, idx = self.model, self.data, self.index
        raw.qpos[row] = d.qpos
        raw.qvel[row] = d.qvel
        raw.finger_force[row] = d.actuator_force[idx.finger_actuators]
        raw.tcp_pos[row] = d.site_xpos[idx.tcp_site]
        mujoco.mj_jacSite(m, d, self._jacp, self._jacr, idx.tcp_site)
        raw.jacobian[row, :3] = self._jacp[:, idx.arm_dof]
        raw.jacobian[row, 3:] = self._jacr[:, idx.arm_dof]
        raw.pad_pos[row] = d.geom_xpos[idx.pad_geoms]
        raw.pad_rot[row] = d.geom_xmat[idx.pad_geoms].reshape(2, 3, 3)
        raw.contacts[row] = _active_contacts(d)


def _active_contacts(data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Geom pairs ``(k, 2)``, normal forces ``(k,)`` (N) and positions ``(k, 3)`` of the contacts
    that carry a constraint force, or None when there are none."""
    if data.ncon == 0:
        return None
    contact = data.contact
    efc = contact.efc_address
    active = efc >= 0
    if not active.all():
        if not active.any():
            return None
        return contact.geom[active], data.efc_force[efc[active]], contact.pos[active]
    # Elliptic cones: the first constraint row of a contact is its normal force.
    return contact.geom, data.efc_force[efc], contact.pos


class RawState:
    """Per-cell copies of MuJoCo state for one batch, one row per cell (SI units)."""

    def __init__(self, num_cells: int, config: CellConfig, model: mujoco.MjModel) -> None:
        n = num_cells
        cam = config.observation.camera
        self.qpos = np.zeros((n, model.nq))
        self.qvel = np.zeros((n, model.nv))
        self.finger_force = np.zeros((n, 2))
        self.tcp_pos = np.zeros((n, 3))
        self.jacobian = np.zeros((n, 6, 6))
        self.pad_pos = np.zeros((n, 2, 3))
        self.pad_rot = np.zeros((n, 2, 3, 3))
        self.contacts: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * n
        self.imu = np.zeros((n, config.physics.control_substeps, 6))
        self.geom_id = np.zeros((n, cam.height * cam.width), dtype=np.int32)
        self.distance = np.zeros((n, cam.height * cam.width))


@functools.lru_cache(maxsize=8)
def _home_configuration(config: CellConfig) -> tuple[float, ...]:
    spec = mujoco.MjSpec.from_string(cell_xml(config, 1))
    model = spec.compile()
    data = mujoco.MjData(model)
    index = CellIndex.build(model, 1)
    seed = np.array([0.0, 0.6, 1.6, 0.0, 0.9, 0.0])
    q, error = solve_ik(model, data, index, HOME_TCP_POSITION, top_down_rotation(0.0), seed, iterations=100)
    if error > 1e-4:
        raise RuntimeError(f"home pose IK did not converge (error {error:.2e})")
    return tuple(float(v) for v in q)


def home_configuration(config: CellConfig) -> np.ndarray:
    """Arm joint angles (rad) that put the TCP at :data:`HOME_TCP_POSITION`, pointing down."""
    return np.array(_home_configuration(config))
