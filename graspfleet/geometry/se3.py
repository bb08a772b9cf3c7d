"""SO(3) and SE(3) in NumPy: hat/vee, Exp/Log, composition, left Jacobians, quaternions.

Conventions (shared with :mod:`graspfleet.geometry.se3_torch`):

- a rotation vector ω ∈ so(3) has angle θ = ‖ω‖ (rad) about axis ω/θ;
- a twist ξ ∈ se(3) is ``(ρ, ω)``: translation part first (m), rotation part second (rad);
- poses are 4×4 homogeneous matrices ``[[R, t], [0, 1]]``; ``compose(A, B) = A @ B``;
- perturbations are on the left: ``Exp(ξ + δ) ≈ Exp(J_l(ξ) δ) · Exp(ξ)``;
- quaternions for commands are in ROS order ``(x, y, z, w)``.

Closed forms use Taylor expansions below :data:`SMALL_ANGLE` and the Shepperd
(largest-diagonal) quaternion extraction for ``Log``, which stays accurate up to θ = π.
Every function accepts a leading batch shape.
"""

from __future__ import annotations

import numpy as np

SMALL_ANGLE = 1e-2
"""Below this angle (rad) the coefficients use their Taylor series (to θ⁴; the next terms are below
1e-16 there). Above it the closed forms avoid cancellation: 1 − cos θ is computed as 2 sin²(θ/2)."""


def hat(omega: np.ndarray) -> np.ndarray:
    """Skew-symmetric matrix ``[ω]×`` of vectors ``(..., 3)`` → ``(..., 3, 3)``."""
    w = np.asarray(omega, dtype=np.float64)
    x, y, z = w[..., 0], w[..., 1], w[..., 2]
    zero = np.zeros_like(x)
    return np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], axis=-2)


def vee(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hat`: the vector of the skew part of ``(..., 3, 3)``."""
    m = np.asarray(matrix, dtype=np.float64)
    return 0.5 * np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)


def se3_hat(xi: np.ndarray) -> np.ndarray:
    """4×4 matrix of twists ``(..., 6)`` in se(3)."""
    xi = np.asarray(xi, dtype=np.float64)
    out = np.zeros((*xi.shape[:-1], 4, 4))
    out[..., :3, :3] = hat(xi[..., 3:])
    out[..., :3, 3] = xi[..., :3]
    return out


def se3_vee(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`se3_hat`."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[..., :3, 3], vee(m[..., :3, :3])], axis=-1)


def _coefficients(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``A = sin θ/θ``, ``B = (1 − cos θ)/θ²``, ``C = (θ − sin θ)/θ³``, safe at θ → 0."""
    small = theta < SMALL_ANGLE
    t = np.where(small, 1.0, theta)
    t2 = theta * theta
    a = np.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, np.sin(t) / t)
    b = np.where(small, 0.5 - t2 / 24.0 + t2 * t2 / 720.0, 2.0 * np.sin(t / 2.0) ** 2 / (t * t))
    c = np.where(small, 1.0 / 6.0 - t2 / 120.0 + t2 * t2 / 5040.0, (t - np.sin(t)) / (t * t * t))
    return a, b, c


def so3_exp(omega: np.ndarray) -> np.ndarray:
    """Rotation matrices of rotation vectors (Rodrigues)."""
    w = np.asarray(omega, dtype=np.float64)
    theta = np.linalg.norm(w, axis=-1)
    a, b, _ = _coefficients(theta)
    k = hat(w)
    return np.eye(3) + a[..., None, None] * k + b[..., None, None] * (k @ k)


def matrix_to_quaternion(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(x, y, z, w)`` with ``w ≥ 0`` of rotation matrices (Shepperd's method)."""
    r = np.asarray(rotation, dtype=np.float64)
    batch = r.shape[:-2]
    r = r.reshape(-1, 3, 3)
    trace = np.trace(r, axis1=1, axis2=2)
    diag = np.stack([r[:, 0, 0], r[:, 1, 1], r[:, 2, 2]], axis=1)
    # Four candidate (unnormalized) quaternions; use the best conditioned one per matrix.
    cand = np.empty((r.shape[0], 4, 4))
    cand[:, 0] = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1], 1 + trace], 1)
    cand[:, 1] = np.stack(
        [1 + 2 * diag[:, 0] - trace, r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0], r[:, 2, 1] - r[:, 1, 2]], 1
    )
    cand[:, 2] = np.stack(
        [r[:, 0, 1] + r[:, 1, 0], 1 + 2 * diag[:, 1] - trace, r[:, 1, 2] + r[:, 2, 1], r[:, 0, 2] - r[:, 2, 0]], 1
    )
    cand[:, 3] = np.stack(
        [r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1], 1 + 2 * diag[:, 2] - trace, r[:, 1, 0] - r[:, 0, 1]], 1
    )
    choice = np.argmax(np.stack([trace, diag[:, 0], diag[:, 1], diag[:, 2]], axis=1), axis=1)
    q = cand[np.arange(r.shape[0]), choice]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    return q.reshape(*batch, 4)


def quaternion_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices of quaternions ``(x, y, z, w)`` (normalized first)."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=-2,
    )


def so3_log(rotation: np.ndarray) -> np.ndarray:
    """Rotation vectors (θ ∈ [0, π]) of rotation matrices, accurate near θ = 0 and θ = π."""
    q = matrix_to_quaternion(rotation)
    v, w = q[..., :3], q[..., 3]
    s = np.linalg.norm(v, axis=-1)
    theta = 2.0 * np.arctan2(s, w)
    # θ / sin(θ/2) → 2 as s → 0 (w ≈ 1); θ/s otherwise.
    scale = np.where(s < 1e-12, 2.0 / np.maximum(w, 1e-12), theta / np.maximum(s, 1e-300))
    return v * scale[..., None]


def so3_left_jacobian(omega: np.ndarray) -> np.ndarray:
    """``J_l(ω) = I + B[ω]× + C[ω]×²``."""
    w = np.asarray(omega, dtype=np.float64)
    _, b, c = _coefficients(np.linalg.norm(w, axis=-1))
    k = hat(w)
    return np.eye(3) + b[..., None, None] * k + c[..., None, None] * (k @ k)


def so3_left_jacobian_inverse(omega: np.ndarray) -> np.ndarray:
    """``J_l(ω)⁻¹ = I − ½[ω]× + D[ω]×²`` with ``D = (1 − θ sin θ / (2(1 − cos θ)))/θ²``; θ < 2π."""
    w = np.asarray(omega, dtype=np.float64)
    theta = np.linalg.norm(w, axis=-1)
    small = theta < SMALL_ANGLE
    t = np.where(small, 1.0, theta)
    t2 = theta * theta
    d = np.where(
        small,
        1.0 / 12.0 + t2 / 720.0 + t2 * t2 / 30240.0,
        (1.0 - t * np.sin(t) / (4.0 * np.sin(t / 2.0) ** 2)) / (t * t),
    )
    k = hat(w)
    return np.eye(3) - 0.5 * k + d[..., None, None] * (k @ k)


def _q_coefficients(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    small = theta < 5e-2
    t = np.where(small, 1.0, theta)
    t2 = theta * theta
    c1 = np.where(small, 1 / 6 - t2 / 120 + t2 * t2 / 5040, (t - np.sin(t)) / t**3)
    c2 = np.where(small, 1 / 24 - t2 / 720 + t2 * t2 / 40320, (t * t + 2 * np.cos(t) - 2) / (2 * t**4))
    c3 = np.where(small, 1 / 120 - t2 / 2520 + t2 * t2 / 120960, (2 * t - 3 * np.sin(t) + t * np.cos(t)) / (2 * t**5))
    return c1, c2, c3


def _q_block(xi: np.ndarray) -> np.ndarray:
    """The translation–rotation block Q(ρ, ω) of the SE(3) left Jacobian (Barfoot, eq. 7.86)."""
    rho, omega = xi[..., :3], xi[..., 3:]
    p, w = hat(rho), hat(omega)
    c1, c2, c3 = _q_coefficients(np.linalg.norm(omega, axis=-1))
    wp, pw, wpw = w @ p, p @ w, w @ p @ w
    return (
        0.5 * p
        + c1[..., None, None] * (wp + pw + wpw)
        + c2[..., None, None] * (w @ wp + pw @ w - 3 * wpw)
        + c3[..., None, None] * (wpw @ w + w @ wpw)
    )


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """Poses ``Exp(ξ)`` of twists ``(..., 6)``: ``[[Exp(ω), J_l(ω) ρ], [0, 1]]``."""
    xi = np.asarray(xi, dtype=np.float64)
    out = np.zeros((*xi.shape[:-1], 4, 4))
    out[..., :3, :3] = so3_exp(xi[..., 3:])
    out[..., :3, 3] = (so3_left_jacobian(xi[..., 3:]) @ xi[..., :3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def se3_log(pose: np.ndarray) -> np.ndarray:
    """Twists ``(ρ, ω)`` with θ ∈ [0, π] of poses: ``ω = Log(R)``, ``ρ = J_l(ω)⁻¹ t``."""
    pose = np.asarray(pose, dtype=np.float64)
    omega = so3_log(pose[..., :3, :3])
    rho = (so3_left_jacobian_inverse(omega) @ pose[..., :3, 3, None])[..., 0]
    return np.concatenate([rho, omega], axis=-1)


def se3_left_jacobian(xi: np.ndarray) -> np.ndarray:
    """6×6 left Jacobian ``[[J_l(ω), Q], [0, J_l(ω)]]`` of twists ``(ρ, ω)``."""
    xi = np.asarray(xi, dtype=np.float64)
    j = so3_left_jacobian(xi[..., 3:])
    out = np.zeros((*xi.shape[:-1], 6, 6))
    out[..., :3, :3] = j
    out[..., 3:, 3:] = j
    out[..., :3, 3:] = _q_block(xi)
    return out


def se3_left_jacobian_inverse(xi: np.ndarray) -> np.ndarray:
    """``[[J⁻¹, −J⁻¹ Q J⁻¹], [0, J⁻¹]]``, the inverse of :func:`se3_left_jacobian` (θ < 2π)."""
    xi = np.asarray(xi, dtype=np.float64)
    j_inv = so3_left_jacobian_inverse(xi[..., 3:])
    out = np.zeros((*xi.shape[:-1], 6, 6))
    out[..., :3, :3] = j_inv
    out[..., 3:, 3:] = j_inv
    out[..., :3, 3:] = -j_inv @ _q_block(xi) @ j_inv
    return out


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a ∘ b`` of poses."""
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)


def inverse(pose: np.ndarray) -> np.ndarray:
    """Inverse of poses, ``[[Rᵀ, −Rᵀt], [0, 1]]``."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.zeros_like(pose)
    rt = np.swapaxes(pose[..., :3, :3], -1, -2)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(rt @ pose[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Pose from rotation matrices ``(..., 3, 3)`` and translations ``(..., 3)``."""
    rotation = np.asarray(rotation, dtype=np.float64)
    out = np.zeros((*rotation.shape[:-2], 4, 4))
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


def apply_twist_at_point(xi: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """``Exp(ξ) ∘ T`` with ξ expressed in a frame at T's origin with world axes.

    ρ then moves T's origin and ω rotates T about its own origin: the result's translation is
    ``t + J_l(ω)ρ`` and its rotation ``Exp(ω) R``. This is ``Tr(t) · Exp(ξ) · Tr(−t) · T``.
    """
    step = se3_exp(xi)
    pose = np.asarray(pose, dtype=np.float64)
    out = np.zeros_like(pose)
    out[..., :3, :3] = step[..., :3, :3] @ pose[..., :3, :3]
    out[..., :3, 3] = pose[..., :3, 3] + step[..., :3, 3]
    out[..., 3, 3] = 1.0
    return out


def twist_between_at_point(current: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The twist ξ with ``apply_twist_at_point(ξ, current) == target`` (rotation angle ≤ π)."""
    current = np.asarray(current, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    omega = so3_log(target[..., :3, :3] @ np.swapaxes(current[..., :3, :3], -1, -2))
    rho = (so3_left_jacobian_inverse(omega) @ (target[..., :3, 3] - current[..., :3, 3])[..., None])[..., 0]
    return np.concatenate([rho, omega], axis=-1)


def lock_quaternion_sign(quat_xyzw: np.ndarray, previous_xyzw: np.ndarray | None) -> np.ndarray:
    """``q`` or ``−q``, whichever is closer to ``previous`` (``q·q_prev ≥ 0``): q and −q are the
    same rotation, and a command stream must not alternate between them."""
    q = np.asarray(quat_xyzw, dtype=np.float64)
    if previous_xyzw is None:
        return q
    dot = np.sum(q * np.asarray(previous_xyzw, dtype=np.float64), axis=-1, keepdims=True)
    return np.where(dot < 0, -q, q)


def pose_command(pose: np.ndarray, previous_xyzw: np.ndarray | None) -> np.ndarray:
    """ROS-style pose commands ``(x, y, z, qx, qy, qz, qw)`` with the quaternion sign locked to
    the previous command's (``Exp → quaternion`` projection with a post-projection sign lock)."""
    pose = np.asarray(pose, dtype=np.float64)
    quat = lock_quaternion_sign(matrix_to_quaternion(pose[..., :3, :3]), previous_xyzw)
    return np.concatenate([pose[..., :3, 3], quat], axis=-1)
