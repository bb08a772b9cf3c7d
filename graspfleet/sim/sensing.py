"""Batched sensing: turn per-cell MuJoCo state copies into measurements for all cells at once.

Contacts of every cell are concatenated and classified in one pass (which geoms touch:
pads, arm links, table, objects), then reduced per cell: the 2×R×C tactile pressure image
of the finger pads, each pad's normal force on the target, and the forces that count as
collisions. Everything is pure NumPy over arrays with a leading cell axis.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from graspfleet.sim.cell import RawState
from graspfleet.sim.model import (
    GEOM_ARM,
    GEOM_OBJECT,
    GEOM_PAD_LEFT,
    GEOM_PAD_RIGHT,
    GEOM_TABLE,
    CellIndex,
)


class ContactReadings(NamedTuple):
    """Per-cell contact measurements."""

    tactile: np.ndarray
    """Pad pressure ``(N, 2, R, C)`` (kPa), left pad first."""
    pad_force_target: np.ndarray
    """Normal force of each pad on the target object ``(N, 2)`` (N)."""
    pad_force_objects: np.ndarray
    """Total normal force of both pads on any object ``(N,)`` (N)."""
    arm_table_force: np.ndarray
    """Largest normal force of any robot geom on the table ``(N,)`` (N)."""
    arm_object_force: np.ndarray
    """Largest normal force of a non-finger arm link on an object ``(N,)`` (N)."""


def read_contacts(
    contacts: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None],
    geom_role: np.ndarray,
    target_role: np.ndarray,
    pad_pos: np.ndarray,
    pad_rot: np.ndarray,
    pad_half_size: np.ndarray,
    rows: int,
    cols: int,
) -> ContactReadings:
    """Classify and reduce the active contacts of a batch of cells.

    ``contacts[i]`` holds cell i's geom pairs, normal forces (N) and world positions (m);
    ``target_role[i]`` is the geom role of its target object; ``pad_pos``/``pad_rot`` are the
    pads' world poses ``(N, 2, 3)``/``(N, 2, 3, 3)``; ``pad_half_size`` the pad box half-sizes
    (m). Taxel rows run along the pad's length (local z), columns across it (local x).
    """
    n = len(contacts)
    tactile = np.zeros((n, 2, rows, cols))
    pad_target = np.zeros((n, 2))
    pad_objects = np.zeros(n)
    arm_table = np.zeros(n)
    arm_object = np.zeros(n)
    present = [i for i, c in enumerate(contacts) if c is not None]
    if not present:
        return ContactReadings(tactile, pad_target, pad_objects, arm_table, arm_object)
    parts = [c for c in contacts if c is not None]
    geoms = np.concatenate([p[0] for p in parts])
    force = np.concatenate([p[1] for p in parts])
    pos = np.concatenate([p[2] for p in parts])
    cell: np.ndarray = np.repeat(np.array(present), [len(p[1]) for p in parts])
    r1 = geom_role[geoms[:, 0]]
    r2 = geom_role[geoms[:, 1]]
    robot1 = (r1 >= GEOM_ARM) & (r1 < GEOM_OBJECT)
    robot2 = (r2 >= GEOM_ARM) & (r2 < GEOM_OBJECT)
    table = ((r1 == GEOM_TABLE) & robot2) | ((r2 == GEOM_TABLE) & robot1)
    np.maximum.at(arm_table, cell[table], force[table])
    link_object = ((r1 == GEOM_ARM) & (r2 >= GEOM_OBJECT)) | ((r2 == GEOM_ARM) & (r1 >= GEOM_OBJECT))
    np.maximum.at(arm_object, cell[link_object], force[link_object])
    taxel_area = (2 * pad_half_size[0] / cols) * (2 * pad_half_size[2] / rows)
    for pad, role in enumerate((GEOM_PAD_LEFT, GEOM_PAD_RIGHT)):
        on_pad = (r1 == role) | (r2 == role)
        if not on_pad.any():
            continue
        other = np.where(r1 == role, r2, r1)[on_pad]
        c = cell[on_pad]
        f = force[on_pad]
        on_target = other == target_role[c]
        pad_target[:, pad] = np.bincount(c[on_target], weights=f[on_target], minlength=n)
        on_object = other >= GEOM_OBJECT
        pad_objects += np.bincount(c[on_object], weights=f[on_object], minlength=n)
        local = np.einsum("kj,kji->ki", pos[on_pad] - pad_pos[c, pad], pad_rot[c, pad])
        _splat(
            tactile[:, pad],
            c,
            (local[:, 2] / pad_half_size[2] + 1.0) / 2.0 * rows - 0.5,
            (local[:, 0] / pad_half_size[0] + 1.0) / 2.0 * cols - 0.5,
            f / taxel_area / 1000.0,
        )
    return ContactReadings(tactile, pad_target, pad_objects, arm_table, arm_object)


def _splat(grid: np.ndarray, cell: np.ndarray, r: np.ndarray, c: np.ndarray, value: np.ndarray) -> None:
    """Add ``value`` into ``grid[cell]`` at fractional taxel coordinates with bilinear weights."""
    _, rows, cols = grid.shape
    r = np.clip(r, 0.0, rows - 1.0)
    c = np.clip(c, 0.0, cols - 1.0)
    r0 = np.minimum(np.floor(r).astype(np.int64), max(rows - 2, 0))
    c0 = np.minimum(np.floor(c).astype(np.int64), max(cols - 2, 0))
    fr, fc = r - r0, c - c0
    r1 = np.minimum(r0 + 1, rows - 1)
    c1 = np.minimum(c0 + 1, cols - 1)
    np.add.at(grid, (cell, r0, c0), value * (1 - fr) * (1 - fc))
    np.add.at(grid, (cell, r1, c0), value * fr * (1 - fc))
    np.add.at(grid, (cell, r0, c1), value * (1 - fr) * fc)
    np.add.at(grid, (cell, r1, c1), value * fr * fc)


def rotate_by_quaternion(quat_wxyz: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Rotate ``vectors`` ``(N, 3)`` by unit quaternions ``(N, 4)`` (w, x, y, z)."""
    w = quat_wxyz[:, :1]
    u = quat_wxyz[:, 1:]
    t = 2.0 * np.cross(u, vectors)
    return vectors + w * t + np.cross(u, t)


class Kinematics(NamedTuple):
    """Per-cell quantities derived from copied state."""

    joint_pos: np.ndarray
    joint_vel: np.ndarray
    gripper_width: np.ndarray
    grip_force: np.ndarray
    """Mean force the two finger servos apply (N)."""
    tcp_vel: np.ndarray
    """TCP linear velocity (m/s, world frame)."""
    target_pose: np.ndarray
    """Target position (m) and orientation quaternion (w, x, y, z), ``(N, 7)``."""
    target_vel_at_tcp: np.ndarray
    """Velocity of the target's material point at the TCP (m/s, world frame)."""
    joint_limit_distance: np.ndarray
    """Distance of the joint closest to a limit from that limit (rad)."""


def derive_kinematics(raw: RawState, index: CellIndex, target: np.ndarray) -> Kinematics:
    """Joint state, TCP velocity and the target's pose and velocity for every cell.

    ``target`` holds each cell's target object slot.
    """
    rows = np.arange(raw.qpos.shape[0])
    joint_pos = raw.qpos[:, index.arm_qpos]
    joint_vel = raw.qvel[:, index.arm_dof]
    qadr = index.object_qpos[target][:, None] + np.arange(7)
    pose = raw.qpos[rows[:, None], qadr]
    dadr = index.object_dof[target][:, None] + np.arange(6)
    twist = raw.qvel[rows[:, None], dadr]
    omega_world = rotate_by_quaternion(pose[:, 3:], twist[:, 3:])
    target_vel = twist[:, :3] + np.cross(omega_world, raw.tcp_pos - pose[:, :3])
    tcp_vel = np.einsum("nij,nj->ni", raw.jacobian[:, :3], joint_vel)
    limit_distance = np.minimum(joint_pos - index.joint_low, index.joint_high - joint_pos).min(axis=1)
    return Kinematics(
        joint_pos=joint_pos,
        joint_vel=joint_vel,
        gripper_width=raw.qpos[:, index.finger_qpos].sum(axis=1),
        grip_force=np.abs(raw.finger_force).mean(axis=1),
        tcp_vel=tcp_vel,
        target_pose=pose,
        target_vel_at_tcp=target_vel,
        joint_limit_distance=limit_distance,
    )
