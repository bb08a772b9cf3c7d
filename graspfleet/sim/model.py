"""The grasp cell's MuJoCo model: a 6-DoF arm with a parallel-jaw gripper, a table, objects.

The model is written for graspfleet. Frames (world, metres): the table top is the plane
z = 0 with its centre at the origin; the arm's base stands at x = −0.45 m. The arm is a
yaw–pitch–pitch–roll–pitch–roll chain (a spherical wrist) whose links are gravity
compensated and position-servoed; each finger is a slide joint driven by a position servo
whose force limit is the commanded grip force. Every servo is critically damped
(``dampratio="1"``, recomputed from the randomized stiffness at each compile). Each object slot is a free body whose
shape, size, mass, inertia, friction and colour are set per episode by recompiling the
:class:`mujoco.MjSpec` (≈0.2 ms), so shape changes need no model surgery.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import mujoco
import numpy as np

from graspfleet.sim.config import CellConfig

ARM_JOINTS: Final = (
    "shoulder_yaw",
    "shoulder_pitch",
    "elbow_pitch",
    "forearm_roll",
    "wrist_pitch",
    "wrist_roll",
)
FINGER_JOINTS: Final = ("finger_left", "finger_right")
PAD_GEOMS: Final = ("pad_left", "pad_right")
TCP_SITE: Final = "tcp"
IMU_SITE: Final = "imu"
TABLE_GEOM: Final = "table"

ARM_STIFFNESS: Final = 600.0
"""Nominal position-servo stiffness of the arm joints (N·m/rad)."""
JOINT_ARMATURE: Final = 0.05
"""Reflected rotor inertia of each arm joint (kg·m²)."""
ARENA_MEMORY: Final = "2M"
"""MjData arena (contacts, constraints, stack). MuJoCo's default is ~16 MB per cell; a grasp
scene peaks far below 2 MB, and allocating less makes the per-episode ``MjData`` cheap."""
CYLINDER_HEIGHT_RATIO: Final = 1.2
"""A cylinder's half-height over its radius: cylinders stand a little taller than wide."""

# Collision bits: robot geoms never collide with each other; everything else collides with all.
_ROBOT_BITS = 'contype="1" conaffinity="2" group="1"'
_SCENE_BITS = 'contype="2" conaffinity="3"'

_ARM_XML = f"""
<body name="base" pos="-0.45 0 0">
  <geom name="base" type="cylinder" size="0.07 0.05" pos="0 0 0.05" rgba="0.25 0.25 0.28 1" {_ROBOT_BITS}/>
  <body name="link1" pos="0 0 0.1" gravcomp="1">
    <joint name="shoulder_yaw" axis="0 0 1" range="-2.9 2.9"/>
    <geom type="capsule" fromto="0 0 0 0 0 0.1" size="0.05" rgba="0.85 0.85 0.88 1" {_ROBOT_BITS}/>
    <body name="link2" pos="0 0 0.1" gravcomp="1">
      <joint name="shoulder_pitch" axis="0 1 0" range="-1.8 1.8"/>
      <geom type="capsule" fromto="0 0 0 0 0 0.4" size="0.04" rgba="0.85 0.85 0.88 1" {_ROBOT_BITS}/>
      <body name="link3" pos="0 0 0.4" gravcomp="1">
        <joint name="elbow_pitch" axis="0 1 0" range="-2.6 2.6"/>
        <geom type="capsule" fromto="0 0 0 0 0 0.17" size="0.035" rgba="0.85 0.85 0.88 1" {_ROBOT_BITS}/>
        <body name="link4" pos="0 0 0.17" gravcomp="1">
          <joint name="forearm_roll" axis="0 0 1" range="-2.9 2.9"/>
          <geom type="capsule" fromto="0 0 0 0 0 0.17" size="0.03" rgba="0.85 0.85 0.88 1" {_ROBOT_BITS}/>
          <body name="link5" pos="0 0 0.17" gravcomp="1">
            <joint name="wrist_pitch" axis="0 1 0" range="-2.2 2.2"/>
            <geom type="capsule" fromto="0 0 0 0 0 0.06" size="0.03" rgba="0.3 0.3 0.33 1" {_ROBOT_BITS}/>
            <body name="link6" pos="0 0 0.06" gravcomp="1">
              <joint name="wrist_roll" axis="0 0 1" range="-2.9 2.9"/>
              <site name="imu" pos="0 0 0.02" size="0.005"/>
              <site name="tcp" pos="0 0 0.1" size="0.005"/>
              <geom name="palm" type="box" size="0.025 0.06 0.015" pos="0 0 0.03" rgba="0.2 0.2 0.22 1" {_ROBOT_BITS}/>
              <body name="finger_left" pos="0 0 0.045" gravcomp="1">
                <joint name="finger_left" type="slide" axis="0 1 0" range="0 0.045" damping="5" armature="0.01"/>
                <geom name="finger_left" type="box" size="0.01 0.006 0.04" pos="0 0.008 0.04" rgba="0.2 0.2 0.22 1" {_ROBOT_BITS}/>
                <geom name="pad_left" type="box" size="0.009 0.001 0.022" pos="0 0.001 0.055" rgba="0.1 0.1 0.1 1" friction="1.2 0.01 0.0001" {_ROBOT_BITS}/>
              </body>
              <body name="finger_right" pos="0 0 0.045" gravcomp="1">
                <joint name="finger_right" type="slide" axis="0 -1 0" range="0 0.045" damping="5" armature="0.01"/>
                <geom name="finger_right" type="box" size="0.01 0.006 0.04" pos="0 -0.008 0.04" rgba="0.2 0.2 0.22 1" {_ROBOT_BITS}/>
                <geom name="pad_right" type="box" size="0.009 0.001 0.022" pos="0 -0.001 0.055" rgba="0.1 0.1 0.1 1" friction="1.2 0.01 0.0001" {_ROBOT_BITS}/>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>
  </body>
</body>
"""


def _object_xml(index: int) -> str:
    return (
        f'<body name="object{index}" pos="{0.3 + 0.1 * index} 0.6 0.05">'
        f'<freejoint name="object{index}"/>'
        f'<geom name="object{index}" type="box" size="0.025 0.025 0.025" mass="0.2" condim="4" '
        f'priority="1" group="2" rgba="1 0 0 1" {_SCENE_BITS}/>'
        "</body>"
    )


def cell_xml(config: CellConfig, num_objects: int) -> str:
    """MJCF text of a grasp cell with ``num_objects`` object slots."""
    physics = config.physics
    kp_finger = config.gripper.finger_stiffness
    arm_actuators = "".join(
        f'<position name="{j}" joint="{j}" kp="{ARM_STIFFNESS}" dampratio="1" inheritrange="1"/>' for j in ARM_JOINTS
    )
    finger_actuators = "".join(
        f'<position name="{j}" joint="{j}" kp="{kp_finger}" dampratio="1" inheritrange="1" '
        f'forcelimited="true" forcerange="-{config.gripper.max_force} {config.gripper.max_force}"/>'
        for j in FINGER_JOINTS
    )
    objects = "".join(_object_xml(i) for i in range(num_objects))
    return f"""
<mujoco model="graspfleet_cell">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{physics.timestep}" cone="elliptic" impratio="10" integrator="implicitfast"/>
  <size memory="{ARENA_MEMORY}"/>
  <default>
    <joint armature="{JOINT_ARMATURE}" damping="2"/>
    <geom friction="1 0.005 0.0001"/>
  </default>
  <worldbody>
    <geom name="table" type="box" size="0.5 0.5 0.02" pos="0 0 -0.02" rgba="0.55 0.45 0.35 1" group="0" {_SCENE_BITS}/>
    {_ARM_XML}
    {objects}
  </worldbody>
  <actuator>{arm_actuators}{finger_actuators}</actuator>
  <sensor>
    <accelerometer name="imu_accel" site="imu"/>
    <gyro name="imu_gyro" site="imu"/>
  </sensor>
</mujoco>
"""


GEOM_TABLE: Final = 1
GEOM_ARM: Final = 2
GEOM_FINGER: Final = 3
GEOM_PAD_LEFT: Final = 4
GEOM_PAD_RIGHT: Final = 5
GEOM_OBJECT: Final = 6


@dataclasses.dataclass(frozen=True)
class CellIndex:
    """Ids and address tables of one compiled cell model, resolved once per topology."""

    arm_qpos: np.ndarray
    arm_dof: np.ndarray
    finger_qpos: np.ndarray
    finger_dof: np.ndarray
    arm_actuators: np.ndarray
    finger_actuators: np.ndarray
    joint_low: np.ndarray
    joint_high: np.ndarray
    tcp_site: int
    imu_site: int
    pad_geoms: np.ndarray
    object_bodies: np.ndarray
    object_geoms: np.ndarray
    object_qpos: np.ndarray
    """qpos address of each object's free joint (position xyz, then quaternion wxyz)."""
    object_dof: np.ndarray
    geom_role: np.ndarray
    """GEOM_* role of every geom; objects are ``GEOM_OBJECT + slot``."""
    imu_sensor_adr: int

    @classmethod
    def build(cls, model: mujoco.MjModel, num_objects: int) -> CellIndex:
        """Resolve every id graspfleet needs from ``model``."""

        def jid(name: str) -> int:
            return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name))

        def gid(name: str) -> int:
            return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name))

        arm_j = [jid(n) for n in ARM_JOINTS]
        finger_j = [jid(n) for n in FINGER_JOINTS]
        obj_j = [jid(f"object{i}") for i in range(num_objects)]
        role = np.full(model.ngeom, GEOM_ARM, dtype=np.int16)
        role[gid(TABLE_GEOM)] = GEOM_TABLE
        for name in FINGER_JOINTS:
            role[gid(name)] = GEOM_FINGER
        role[gid("pad_left")] = GEOM_PAD_LEFT
        role[gid("pad_right")] = GEOM_PAD_RIGHT
        object_geoms = np.array([gid(f"object{i}") for i in range(num_objects)], dtype=np.int32)
        for slot, g in enumerate(object_geoms):
            role[g] = GEOM_OBJECT + slot
        return cls(
            arm_qpos=model.jnt_qposadr[arm_j].copy(),
            arm_dof=model.jnt_dofadr[arm_j].copy(),
            finger_qpos=model.jnt_qposadr[finger_j].copy(),
            finger_dof=model.jnt_dofadr[finger_j].copy(),
            arm_actuators=np.array(
                [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in ARM_JOINTS],
                dtype=np.int32,
            ),
            finger_actuators=np.array(
                [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in FINGER_JOINTS],
                dtype=np.int32,
            ),
            joint_low=model.jnt_range[arm_j, 0].copy(),
            joint_high=model.jnt_range[arm_j, 1].copy(),
            tcp_site=int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, TCP_SITE)),
            imu_site=int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, IMU_SITE)),
            pad_geoms=np.array([gid(n) for n in PAD_GEOMS], dtype=np.int32),
            object_bodies=np.array(
                [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"object{i}") for i in range(num_objects)],
                dtype=np.int32,
            ),
            object_geoms=object_geoms,
            object_qpos=model.jnt_qposadr[obj_j].copy() if obj_j else np.zeros(0, np.int32),
            object_dof=model.jnt_dofadr[obj_j].copy() if obj_j else np.zeros(0, np.int32),
            geom_role=role,
            imu_sensor_adr=int(model.sensor_adr[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, "imu_accel")]),
        )


def primitive_inertia(shape: str, half_size: float, half_height: float, mass: float) -> np.ndarray:
    """Principal moments of inertia (kg·m²) of a solid cube, cylinder or ball about its centre.

    ``half_size`` is the cube half-side or the radius; ``half_height`` the cylinder's half-length.
    """
    if shape == "cube":
        moment = mass * (2 * half_size) ** 2 / 6.0
        return np.full(3, moment)
    if shape == "cylinder":
        r, h = half_size, 2 * half_height
        side = mass * (3 * r**2 + h**2) / 12.0
        return np.array([side, side, mass * r**2 / 2.0])
    if shape == "ball":
        return np.full(3, 2.0 / 5.0 * mass * half_size**2)
    raise ValueError(f"unknown shape {shape!r}")


GEOM_TYPE: Final = {
    "cube": mujoco.mjtGeom.mjGEOM_BOX,
    "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    "ball": mujoco.mjtGeom.mjGEOM_SPHERE,
}


def geom_size(shape: str, half_size: float, half_height: float) -> np.ndarray:
    """MuJoCo ``size`` triple of a shape."""
    if shape == "cube":
        return np.full(3, half_size)
    if shape == "cylinder":
        return np.array([half_size, half_height, 0.0])
    return np.array([half_size, 0.0, 0.0])


def resting_height(shape: str, half_size: float, half_height: float) -> float:
    """Height of the centre of an upright object resting on the table (m)."""
    return half_height if shape == "cylinder" else half_size
