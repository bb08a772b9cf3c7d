"""SO(3)/SE(3) in PyTorch: batched, differentiable, float32 or float64 (conventions as in
:mod:`graspfleet.geometry.se3`), plus the method's two manifold safeguards (method.md §3):

- :class:`ConditionedExp`: ``Exp`` whose backward maps the tangent-space gradient through the
  left Jacobian, and, where ‖ω‖ > π/2, clamps that map's singular values to a maximum
  condition number (default 1e4) so large rotations cannot blow the gradient up;
- :func:`tangent_norm_penalty`: limits the sampler's variance in the tangent space instead of
  clipping on the manifold.

Every Taylor branch evaluates the closed form at a safe angle, so no NaN leaks into
gradients at θ = 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SMALL_ANGLE = {torch.float64: 1e-2, torch.float32: 0.3, torch.float16: 0.5, torch.bfloat16: 0.5}
"""Per dtype, the angle (rad) below which coefficients use their Taylor series (to θ⁴): where the
closed forms' cancellation would cost more digits than the series' truncation."""
GRADIENT_CONDITION_ANGLE = math.pi / 2
"""method.md §3: beyond this rotation angle the Exp gradient map is conditioned."""
MAX_GRADIENT_CONDITION = 1e4
"""method.md §3: the largest condition number the Exp gradient map may have."""


def hat(omega: torch.Tensor) -> torch.Tensor:
    """``[ω]×`` of ``(..., 3)`` → ``(..., 3, 3)``."""
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2
    )


def vee(matrix: torch.Tensor) -> torch.Tensor:
    """Vector of the skew part of ``(..., 3, 3)``."""
    m = matrix
    return 0.5 * torch.stack(
        [m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1
    )


def _angle(omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """θ², a NaN-free θ for the closed forms (1 where small), and the small-angle mask."""
    t2 = (omega * omega).sum(-1)
    small = t2 < SMALL_ANGLE.get(omega.dtype, 1e-2) ** 2
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    return t2, t, small


def _abc(omega: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t2, t, small = _angle(omega)
    a = torch.where(small, 1 - t2 / 6 + t2 * t2 / 120, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, 2 * torch.sin(t / 2) ** 2 / (t * t))
    c = torch.where(small, 1 / 6 - t2 / 120 + t2 * t2 / 5040, (t - torch.sin(t)) / (t * t * t))
    return a, b, c


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device)


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of rotation vectors."""
    a, b, _ = _abc(omega)
    k = hat(omega)
    return _eye(3, omega) + a[..., None, None] * k + b[..., None, None] * (k @ k)


def so3_left_jacobian(omega: torch.Tensor) -> torch.Tensor:
    """``J_l(ω) = I + B[ω]× + C[ω]×²``."""
    _, b, c = _abc(omega)
    k = hat(omega)
    return _eye(3, omega) + b[..., None, None] * k + c[..., None, None] * (k @ k)


def so3_left_jacobian_inverse(omega: torch.Tensor) -> torch.Tensor:
    """``J_l(ω)⁻¹ = I − ½[ω]× + D[ω]×²`` (θ < 2π)."""
    t2, t, small = _angle(omega)
    d = torch.where(
        small,
        1 / 12 + t2 / 720 + t2 * t2 / 30240,
        (1 - t * torch.sin(t) / (4 * torch.sin(t / 2) ** 2)) / (t * t),
    )
    k = hat(omega)
    return _eye(3, omega) - 0.5 * k + d[..., None, None] * (k @ k)


def matrix_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """Unit quaternions ``(x, y, z, w)``, ``w ≥ 0``, by Shepperd's largest-diagonal method."""
    r = rotation
    trace = r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2]
    d0, d1, d2 = r[..., 0, 0], r[..., 1, 1], r[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack(
                [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1], 1 + trace], -1
            ),
            torch.stack(
                [
                    1 + 2 * d0 - trace,
                    r[..., 0, 1] + r[..., 1, 0],
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 2, 1] - r[..., 1, 2],
                ],
                -1,
            ),
            torch.stack(
                [
                    r[..., 0, 1] + r[..., 1, 0],
                    1 + 2 * d1 - trace,
                    r[..., 1, 2] + r[..., 2, 1],
                    r[..., 0, 2] - r[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    r[..., 0, 2] + r[..., 2, 0],
                    r[..., 1, 2] + r[..., 2, 1],
                    1 + 2 * d2 - trace,
                    r[..., 1, 0] - r[..., 0, 1],
                ],
                -1,
            ),
        ],
        -2,
    )
    choice = torch.stack([trace, d0, d1, d2], -1).argmax(-1)
    q = torch.gather(cands, -2, choice[..., None, None].expand(*choice.shape, 1, 4)).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., 3:4] < 0, -q, q)


def so3_log(rotation: torch.Tensor) -> torch.Tensor:
    """Rotation vectors (θ ∈ [0, π]) of rotation matrices."""
    q = matrix_to_quaternion(rotation)
    v, w = q[..., :3], q[..., 3]
    s2 = (v * v).sum(-1)
    small = s2 < 1e-12
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    theta = 2 * torch.atan2(s, w)
    scale = torch.where(small, 2 / w.clamp_min(1e-12) * (1 + s2 / 6), theta / s)
    return v * scale[..., None]


def _q_block(xi: torch.Tensor) -> torch.Tensor:
    rho, omega = xi[..., :3], xi[..., 3:]
    p, w = hat(rho), hat(omega)
    t2 = (omega * omega).sum(-1)
    small = t2 < max(SMALL_ANGLE.get(omega.dtype, 1e-2), 5e-2) ** 2
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    c1 = torch.where(small, 1 / 6 - t2 / 120 + t2 * t2 / 5040, (t - torch.sin(t)) / t**3)
    c2 = torch.where(small, 1 / 24 - t2 / 720 + t2 * t2 / 40320, (t * t + 2 * torch.cos(t) - 2) / (2 * t**4))
    c3 = torch.where(
        small, 1 / 120 - t2 / 2520 + t2 * t2 / 120960, (2 * t - 3 * torch.sin(t) + t * torch.cos(t)) / (2 * t**5)
    )
    wp, pw, wpw = w @ p, p @ w, w @ p @ w
    return (
        0.5 * p
        + c1[..., None, None] * (wp + pw + wpw)
        + c2[..., None, None] * (w @ wp + pw @ w - 3 * wpw)
        + c3[..., None, None] * (wpw @ w + w @ wpw)
    )


def se3_left_jacobian(xi: torch.Tensor) -> torch.Tensor:
    """6×6 left Jacobian ``[[J_l(ω), Q], [0, J_l(ω)]]``."""
    j = so3_left_jacobian(xi[..., 3:])
    zero = torch.zeros_like(j)
    return torch.cat([torch.cat([j, _q_block(xi)], -1), torch.cat([zero, j], -1)], -2)


def se3_left_jacobian_inverse(xi: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`se3_left_jacobian` (θ < 2π)."""
    j_inv = so3_left_jacobian_inverse(xi[..., 3:])
    zero = torch.zeros_like(j_inv)
    top_right = -j_inv @ _q_block(xi) @ j_inv
    return torch.cat([torch.cat([j_inv, top_right], -1), torch.cat([zero, j_inv], -1)], -2)


def make_pose(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """4×4 poses from ``(..., 3, 3)`` rotations and ``(..., 3)`` translations."""
    top = torch.cat([rotation, translation[..., None]], -1)
    bottom = torch.zeros(*rotation.shape[:-2], 1, 4, dtype=rotation.dtype, device=rotation.device)
    bottom[..., 0, 3] = 1
    return torch.cat([top, bottom], -2)


def se3_exp(xi: torch.Tensor) -> torch.Tensor:
    """Poses of twists ``(ρ, ω)``; differentiable by autograd through the closed form."""
    omega = xi[..., 3:]
    t = (so3_left_jacobian(omega) @ xi[..., :3, None])[..., 0]
    return make_pose(so3_exp(omega), t)


def se3_log(pose: torch.Tensor) -> torch.Tensor:
    """Twists ``(ρ, ω)`` with θ ∈ [0, π] of poses."""
    omega = so3_log(pose[..., :3, :3])
    rho = (so3_left_jacobian_inverse(omega) @ pose[..., :3, 3, None])[..., 0]
    return torch.cat([rho, omega], -1)


def inverse(pose: torch.Tensor) -> torch.Tensor:
    """Inverse poses."""
    rt = pose[..., :3, :3].transpose(-1, -2)
    return make_pose(rt, -(rt @ pose[..., :3, 3, None])[..., 0])


def clamp_condition(matrix: torch.Tensor, max_condition: float) -> torch.Tensor:
    """``matrix`` with its singular values raised to at least ``σ_max / max_condition``."""
    u, s, vh = torch.linalg.svd(matrix)
    floor = s[..., :1] / max_condition
    return u @ torch.diag_embed(torch.maximum(s, floor)) @ vh


def left_trivialized_gradient(grad_pose: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """The gradient ``g_i = d/dε L(Exp(ε e_i) T)`` from the ambient gradient ``∂L/∂T`` (4×4)."""
    w = grad_pose @ pose.transpose(-1, -2)
    rot = torch.stack([w[..., 2, 1] - w[..., 1, 2], w[..., 0, 2] - w[..., 2, 0], w[..., 1, 0] - w[..., 0, 1]], -1)
    return torch.cat([w[..., :3, 3], rot], -1)


class ConditionedExp(torch.autograd.Function):
    """``T = Exp(ξ)`` with a conditioned gradient path (method.md §3, "two manifold traps").

    Backward: the left-trivialized gradient ``g`` at T maps to ``∂L/∂ξ = J_l(ξ)ᵀ g`` (exact:
    ``Exp(ξ + δ) ≈ Exp(J_l δ) Exp(ξ)``). As ‖ω‖ grows past π the map degenerates (J_l is
    singular at 2π, so its inverse — the method's ``J_l^{-T}`` form of this step — explodes);
    where ‖ω‖ > ``threshold`` its singular values are clamped to condition number
    ≤ ``max_condition`` before use. Below the threshold the gradient is exact.
    """

    @staticmethod
    def forward(ctx: Any, xi: torch.Tensor, threshold: float, max_condition: float) -> torch.Tensor:
        with torch.no_grad():
            pose = se3_exp(xi)
        ctx.save_for_backward(xi, pose)
        ctx.threshold = threshold
        ctx.max_condition = max_condition
        return pose

    @staticmethod
    def backward(ctx: Any, grad_pose: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        xi, pose = ctx.saved_tensors
        g = left_trivialized_gradient(grad_pose, pose)
        jac = se3_left_jacobian(xi)
        large = torch.linalg.vector_norm(xi[..., 3:], dim=-1) > ctx.threshold
        if bool(large.any()):
            jac = torch.where(large[..., None, None], clamp_condition(jac, ctx.max_condition), jac)
        return (jac.transpose(-1, -2) @ g[..., None])[..., 0], None, None


def conditioned_exp(
    xi: torch.Tensor, threshold: float = GRADIENT_CONDITION_ANGLE, max_condition: float = MAX_GRADIENT_CONDITION
) -> torch.Tensor:
    """``Exp(ξ)`` whose gradient is conditioned where ‖ω‖ > ``threshold`` (see :class:`ConditionedExp`)."""
    out = ConditionedExp.apply(xi, threshold, max_condition)
    assert isinstance(out, torch.Tensor)
    return out


def apply_twist_at_point(step: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """``Exp(ξ) ∘ T`` with the twist's pose ``step = Exp(ξ)`` acting in a frame at T's origin
    with world axes: rotation ``R_step R``, translation ``t + t_step``."""
    rotation = step[..., :3, :3] @ pose[..., :3, :3]
    return make_pose(rotation, pose[..., :3, 3] + step[..., :3, 3])


def tangent_norm_penalty(
    std: torch.Tensor, mean: torch.Tensor, weight: float, max_rotation: float = GRADIENT_CONDITION_ANGLE
) -> torch.Tensor:
    """Variance limit in the tangent space (not an SVD clip on the manifold).

    ``weight · (E‖σ ⊙ ε‖² + relu(‖μ_ω‖ − max_rotation)²)``: the expected squared norm of the
    sampling noise, plus a hinge keeping the mean rotation out of the large-angle region.
    Returns one value per batch element.
    """
    spread = (std * std).sum(-1)
    excess = torch.relu(torch.linalg.vector_norm(mean[..., 3:], dim=-1) - max_rotation)
    return weight * (spread + excess * excess)
