"""An RGB-D camera made by ray casting (``mujoco.mj_multiRay``): no GL, no display.

Each pixel is one ray from the optical centre. Casting returns, per pixel, the geom hit
and the distance along the ray; :func:`shade` then turns a batch of casts into z-depth (m)
and a Lambert-shaded colour image lit by the episode's light colour.
Camera frame: x right, y down, z forward (the optical axis).
"""

from __future__ import annotations

import mujoco
import numpy as np

from graspfleet.sim.config import CameraConfig


def look_at_rotation(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-from-camera rotation whose z axis points from ``position`` to ``target``."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    world_up = np.array([0.0, 0.0, 1.0])
    if abs(forward @ world_up) > 0.999:
        world_up = np.array([1.0, 0.0, 0.0])
    right = np.cross(forward, world_up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def rotation_from_vector(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis·angle, rad), by Rodrigues' formula."""
    rotvec = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = rotvec / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


class RayCamera:
    """Pixel rays of a pinhole camera, posed per episode, cast into one MuJoCo scene."""

    def __init__(self, config: CameraConfig) -> None:
        self.config = config
        h, w = config.height, config.width
        focal = (h / 2.0) / np.tan(np.deg2rad(config.vertical_fov_deg) / 2.0)
        u = (np.arange(w) + 0.5 - w / 2.0) / focal
        v = (np.arange(h) + 0.5 - h / 2.0) / focal
        uu, vv = np.meshgrid(u, v)
        rays = np.stack([uu, vv, np.ones_like(uu)], axis=-1)
        self.rays_camera = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
        """Unit ray directions in the camera frame, ``(H, W, 3)``."""
        self.cos_to_axis = self.rays_camera[..., 2].astype(np.float32)
        """Cosine between each ray and the optical axis: distance × this = z-depth."""
        self.nominal_position = np.asarray(config.position, dtype=np.float64)
        self.nominal_rotation = look_at_rotation(self.nominal_position, np.asarray(config.look_at))
        self.origin = self.nominal_position.copy()
        self.rotation = self.nominal_rotation.copy()
        self.rays_world = np.ascontiguousarray(self.rays_camera.reshape(-1, 3) @ self.rotation.T)

    def set_pose(self, position_jitter: np.ndarray, rotation_jitter: np.ndarray) -> None:
        """Pose the camera at its nominal pose perturbed by a translation (m) and a rotation
        vector (rad, about the nominal camera axes)."""
        self.origin = self.nominal_position + np.asarray(position_jitter, dtype=np.float64)
        self.rotation = self.nominal_rotation @ rotation_from_vector(rotation_jitter)
        self.rays_world = np.ascontiguousarray(self.rays_camera.reshape(-1, 3) @ self.rotation.T)

    def cast(self, model: mujoco.MjModel, data: mujoco.MjData, geom_id: np.ndarray, distance: np.ndarray) -> None:
        """Cast every pixel ray; fill ``geom_id`` (int32, −1 for no hit) and ``distance`` (m, −1
        for no hit), both flat of length H·W."""
        mujoco.mj_multiRay(
            model,
            data,
            self.origin,
            self.rays_world.ravel(),
            None,
            1,
            -1,
            geom_id,
            distance,
            geom_id.shape[0],
            self.config.max_depth,
        )


_LIGHT_DIRECTION = np.array([0.3, -0.6, -0.74]) / np.linalg.norm([0.3, -0.6, -0.74])
"""Direction towards the light in the camera frame (up and to the right of the camera)."""
_AMBIENT = 0.35


def shade(
    distance: np.ndarray,
    geom_id: np.ndarray,
    colour_table: np.ndarray,
    light_rgb: np.ndarray,
    rays_camera: np.ndarray,
    cos_to_axis: np.ndarray,
    max_depth: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth (m) and colour (in [0, 1]) images of a batch of casts, both float32.

    ``distance``/``geom_id``: ``(N, H, W)``; ``colour_table``: ``(N, G + 1, 3)`` linear RGB per
    geom with the background last; ``light_rgb``: ``(N, 3)``. Surface normals are the cross
    product of the depth map's forward differences (the last row/column repeat the one
    before), shaded with an ambient term plus Lambert's cosine law.
    """
    n = geom_id.shape[0]
    hit = geom_id >= 0
    dist = np.where(hit, distance, max_depth).astype(np.float32)
    depth = dist * cos_to_axis
    px, py, pz = (dist * rays_camera[..., i].astype(np.float32) for i in range(3))

    def forward_difference(p: np.ndarray, axis: int) -> np.ndarray:
        d = np.diff(p, axis=axis)
        edge = d[:, :, -1:] if axis == 2 else d[:, -1:]
        return np.concatenate([d, edge], axis=axis)

    ux, uy, uz = (forward_difference(p, 2) for p in (px, py, pz))
    vx, vy, vz = (forward_difference(p, 1) for p in (px, py, pz))
    nx = uy * vz - uz * vy
    ny = uz * vx - ux * vz
    nz = ux * vy - uy * vx
    norm = np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-12
    lx, ly, lz = _LIGHT_DIRECTION
    lambert = np.clip((nx * lx + ny * ly + nz * lz) / norm, 0.0, 1.0)
    intensity = np.where(hit, _AMBIENT + (1.0 - _AMBIENT) * lambert, 1.0).astype(np.float32)
    background = colour_table.shape[1] - 1
    index = np.where(hit, geom_id, background).reshape(n, -1)
    albedo = colour_table.astype(np.float32)[np.arange(n)[:, None], index].reshape(*geom_id.shape, 3)
    colour = albedo * (intensity[..., None] * light_rgb.astype(np.float32)[:, None, None, :])
    return depth, colour
