"""The one observation and action spec shared by simulators, arm proxies, replay and learner.

An observation is a dict of named arrays (below) plus ``mask``, a bool vector in
:data:`MODALITIES` order saying which modalities are present this step; a missing
modality's array is all zeros. ``privileged`` is simulator ground truth that only the critic
may read (asymmetric actor–critic).
"""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np

from graspfleet.sim.config import CellConfig, GripperConfig
from graspfleet.sim.instruction import VOCABULARY

MODALITIES: Final = ("depth", "rgb", "tactile", "imu", "proprio", "instruction", "privileged")
"""Modalities in ``mask`` order."""
MASK_KEY: Final = "mask"
OBSERVATION_KEYS: Final = (*MODALITIES, MASK_KEY)
"""The observation columns of a transition: every modality and the presence mask."""

PROPRIO_FIELDS: Final = (
    *(f"joint_pos_{i}" for i in range(6)),
    *(f"joint_vel_{i}" for i in range(6)),
    "gripper_width",
    "grip_force",
)
PRIVILEGED_FIELDS: Final = (
    "obj_x",
    "obj_y",
    "obj_z",
    "obj_qw",
    "obj_qx",
    "obj_qy",
    "obj_qz",
    "obj_mass",
    "obj_friction",
)
ACTION_FIELDS: Final = (*(f"joint_target_{i}" for i in range(6)), "gripper_width", "grip_force")


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """Name, shape, dtype, unit and bounds of one named array."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    unit: str
    low: float = -np.inf
    high: float = np.inf
    description: str = ""

    def check(self, value: np.ndarray, batched: bool = False) -> None:
        """Raise ValueError naming this array if ``value``'s shape or dtype is wrong or it is not finite."""
        arr = np.asarray(value)
        shape = arr.shape[1:] if batched else arr.shape
        if shape != self.shape:
            raise ValueError(f"{self.name}: expected shape {self.shape}, got {shape}")
        if arr.dtype != self.dtype:
            raise ValueError(f"{self.name}: expected dtype {self.dtype}, got {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise ValueError(f"{self.name}: contains NaN or Inf")


def observation_spec(config: CellConfig) -> dict[str, ArraySpec]:
    """Spec of every observation array for a cell config, ``mask`` included."""
    cam = config.observation.camera
    obs = config.observation
    hw = (cam.height, cam.width)
    return {
        "depth": ArraySpec(
            "depth",
            hw,
            np.dtype(np.float32),
            "m",
            0.0,
            cam.max_depth,
            "z-depth from the ray-cast camera",
        ),
        "rgb": ArraySpec("rgb", (*hw, 3), np.dtype(np.uint8), "intensity", 0, 255, "ray-cast colour image"),
        "tactile": ArraySpec(
            "tactile",
            (2, obs.tactile_rows, obs.tactile_cols),
            np.dtype(np.float32),
            "kPa",
            0.0,
            np.inf,
            "contact pressure on the left and right finger pads",
        ),
        "imu": ArraySpec(
            "imu",
            (config.physics.control_substeps, 6),
            np.dtype(np.float32),
            "m/s², rad/s",
            description="wrist accelerometer (xyz) and gyro (xyz) at every physics step of the control step",
        ),
        "proprio": ArraySpec(
            "proprio",
            (len(PROPRIO_FIELDS),),
            np.dtype(np.float32),
            "rad, rad/s, m, N",
            description="joint positions, joint velocities, gripper width, grip force",
        ),
        "instruction": ArraySpec(
            "instruction",
            (obs.instruction_length,),
            np.dtype(np.int32),
            "token id",
            0,
            len(VOCABULARY) - 1,
            "instruction naming the target, padded with 0",
        ),
        "privileged": ArraySpec(
            "privileged",
            (len(PRIVILEGED_FIELDS),),
            np.dtype(np.float32),
            "m, quaternion wxyz, kg, 1",
            description="target object pose, mass and friction: for the critic only",
        ),
        MASK_KEY: ArraySpec(MASK_KEY, (len(MODALITIES),), np.dtype(np.bool_), "bool", 0, 1, "modality present"),
    }


def action_bounds(
    joint_low: np.ndarray, joint_high: np.ndarray, gripper: GripperConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of the low-level action: joint targets (rad), width (m), force (N)."""
    low = np.concatenate([joint_low, [0.0, 0.0]]).astype(np.float64)
    high = np.concatenate([joint_high, [gripper.max_width, gripper.max_force]]).astype(np.float64)
    return low, high
