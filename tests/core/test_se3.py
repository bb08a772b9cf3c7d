"""SO(3)/SE(3) math in NumPy and PyTorch: round trips, Jacobians, quaternions, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from graspfleet.geometry import se3
from graspfleet.geometry import se3_torch as lie

finite = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)
vectors3 = arrays(np.float64, 3, elements=finite)
vectors6 = arrays(np.float64, 6, elements=finite)


def _rotation_vector(direction: np.ndarray, angle: float) -> np.ndarray:
    norm = np.linalg.norm(direction)
    assume(norm > 1e-3)
    return direction / norm * angle


@settings(max_examples=200, deadline=None)
@given(rho=vectors3, direction=vectors3, angle=st.floats(0.0, math.pi - 1e-6))
def test_log_of_exp_is_identity_below_pi(rho: np.ndarray, direction: np.ndarray, angle: float) -> None:
    xi = np.concatenate([rho, _rotation_vector(direction, angle)])
    np.testing.assert_allclose(se3.se3_log(se3.se3_exp(xi)), xi, atol=1e-7 * (1 + np.abs(xi).max()))


@settings(max_examples=200, deadline=None)
@given(rho=vectors3, direction=vectors3, angle=st.floats(0.0, 50.0))
def test_exp_of_log_is_identity_for_any_pose(rho: np.ndarray, direction: np.ndarray, angle: float) -> None:
    pose = se3.se3_exp(np.concatenate([rho, _rotation_vector(direction, angle)]))
    np.testing.assert_allclose(se3.se3_exp(se3.se3_log(pose)), pose, atol=1e-9 * (1 + np.abs(pose).max()))


@pytest.mark.parametrize("angle", [0.0, 1e-12, 1e-7, 1e-4, 0.5, math.pi - 1e-3, math.pi - 1e-9, math.pi])
def test_so3_log_near_zero_and_pi(angle: float) -> None:
    axis = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    rotation = se3.so3_exp(axis * angle)
    omega = se3.so3_log(rotation)
    np.testing.assert_allclose(se3.so3_exp(omega), rotation, atol=1e-12)
    assert np.linalg.norm(omega) == pytest.approx(angle, abs=1e-9)
    torch_omega = lie.so3_log(torch.tensor(rotation))
    np.testing.assert_allclose(lie.so3_exp(torch_omega).numpy(), rotation, atol=1e-12)


def test_hat_vee_and_composition() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3))
    np.testing.assert_allclose(se3.vee(se3.hat(w)), w)
    np.testing.assert_allclose(se3.hat(w) @ w[..., None], 0.0, atol=1e-15)
    xi = rng.normal(size=(5, 6))
    np.testing.assert_allclose(se3.se3_vee(se3.se3_hat(xi)), xi)
    a, b = se3.se3_exp(xi[:2])
    np.testing.assert_allclose(se3.compose(a, se3.inverse(a)), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(se3.inverse(se3.compose(a, b)), se3.compose(se3.inverse(b), se3.inverse(a)), atol=1e-12)


def _finite_difference_left_jacobian(xi: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    base_inverse = se3.inverse(se3.se3_exp(xi))
    columns = []
    for i in range(6):
        d = np.zeros(6)
        d[i] = eps
        plus = se3.se3_log(se3.se3_exp(xi + d) @ base_inverse)
        minus = se3.se3_log(se3.se3_exp(xi - d) @ base_inverse)
        columns.append((plus - minus) / (2 * eps))
    return np.stack(columns, axis=1)


@settings(max_examples=60, deadline=None)
@given(rho=arrays(np.float64, 3, elements=st.floats(-2, 2)), direction=vectors3, angle=st.floats(0.0, 2.5))
def test_left_jacobian_matches_finite_differences(rho: np.ndarray, direction: np.ndarray, angle: float) -> None:
    xi = np.concatenate([rho, _rotation_vector(direction, angle)])
    jac = se3.se3_left_jacobian(xi)
    np.testing.assert_allclose(jac, _finite_difference_left_jacobian(xi), atol=1e-6)
    np.testing.assert_allclose(se3.se3_left_jacobian_inverse(xi) @ jac, np.eye(6), atol=1e-9)
    np.testing.assert_allclose(lie.se3_left_jacobian(torch.tensor(xi)).numpy(), jac, atol=1e-12)


def test_torch_matches_numpy_in_both_precisions() -> None:
    rng = np.random.default_rng(1)
    xi = rng.normal(size=(32, 6))
    xi[:, 3:] *= 2.5 / np.maximum(np.linalg.norm(xi[:, 3:], axis=1, keepdims=True), 2.5)
    expected = se3.se3_exp(xi)
    np.testing.assert_allclose(lie.se3_exp(torch.tensor(xi)).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(lie.se3_exp(torch.tensor(xi, dtype=torch.float32)).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(lie.se3_log(torch.tensor(expected)).numpy(), xi, atol=1e-10)
    assert lie.se3_log(torch.tensor(expected, dtype=torch.float32)).dtype == torch.float32


def test_quaternions_round_trip_and_ros_order() -> None:
    q = se3.matrix_to_quaternion(se3.so3_exp(np.array([0.0, 0.0, math.pi / 2])))
    np.testing.assert_allclose(q, [0, 0, math.sin(math.pi / 4), math.cos(math.pi / 4)], atol=1e-12)  # x, y, z, w
    rotations = se3.so3_exp(np.random.default_rng(2).normal(size=(20, 3)) * 2)
    np.testing.assert_allclose(se3.quaternion_to_matrix(se3.matrix_to_quaternion(rotations)), rotations, atol=1e-12)


def test_locked_quaternion_sign_never_flips_on_a_smooth_trajectory() -> None:
    axis = np.array([0.2, 0.9, -0.4]) / np.linalg.norm([0.2, 0.9, -0.4])
    angles = np.linspace(0.0, 4 * math.pi, 400)  # passes through π and 2π, where w changes sign
    poses = se3.make_pose(se3.so3_exp(axis * angles[:, None]), np.zeros((400, 3)))
    naive = se3.matrix_to_quaternion(poses[:, :3, :3])
    assert np.any(np.sum(naive[1:] * naive[:-1], axis=1) < 0)  # the unlocked projection flips
    previous = None
    commands = []
    for pose in poses:
        command = se3.pose_command(pose, previous)
        previous = command[3:]
        commands.append(command)
    quats = np.array(commands)[:, 3:]
    assert np.all(np.sum(quats[1:] * quats[:-1], axis=1) > 0)
    np.testing.assert_allclose(se3.quaternion_to_matrix(quats), poses[:, :3, :3], atol=1e-12)


def test_twist_at_point_round_trip() -> None:
    rng = np.random.default_rng(3)
    current = se3.se3_exp(rng.normal(size=6))
    xi = np.concatenate([rng.normal(size=3) * 0.05, rng.normal(size=3) * 0.3])
    target = se3.apply_twist_at_point(xi, current)
    np.testing.assert_allclose(target[:3, 3], current[:3, 3] + se3.so3_left_jacobian(xi[3:]) @ xi[:3])
    np.testing.assert_allclose(se3.twist_between_at_point(current, target), xi, atol=1e-12)


def test_a_twist_applied_at_the_tcp_through_the_conditioned_exp_is_differentiable() -> None:
    """What the IK penalty differentiates: ``Exp(ξ) ∘ T`` with ξ the policy's twist."""
    torch.manual_seed(0)
    xi = (0.2 * torch.randn(4, 6, dtype=torch.float64)).requires_grad_()
    current = lie.se3_exp(0.5 * torch.randn(4, 6, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda x: lie.apply_twist_at_point(lie.conditioned_exp(x), current), (xi,))
    pose = lie.apply_twist_at_point(lie.conditioned_exp(xi), current)
    np.testing.assert_allclose(
        pose.detach().numpy(), se3.apply_twist_at_point(xi.detach().numpy(), current.numpy()), atol=1e-12
    )


def test_conditioned_exp_is_exact_below_the_threshold_including_zero() -> None:
    for xi in (torch.zeros(2, 6, dtype=torch.float64), 0.4 * torch.randn(3, 6, dtype=torch.float64)):
        xi.requires_grad_()
        assert torch.autograd.gradcheck(lie.conditioned_exp, (xi,))
        assert torch.autograd.gradcheck(lie.se3_exp, (xi,))


def test_conditioned_exp_bounds_the_gradient_map_for_large_rotations() -> None:
    xi = torch.tensor([[0.3, 0.1, -0.2, 0.0, 0.0, 2 * math.pi - 1e-4]], dtype=torch.float64)
    raw = torch.linalg.svdvals(lie.se3_left_jacobian(xi))
    assert raw[0, 0] / raw[0, -1] > 1e4  # ill-conditioned without the clamp
    clamped = torch.linalg.svdvals(lie.clamp_condition(lie.se3_left_jacobian(xi), lie.MAX_GRADIENT_CONDITION))
    assert clamped[0, 0] / clamped[0, -1] <= lie.MAX_GRADIENT_CONDITION * (1 + 1e-9)
    xi.requires_grad_()
    lie.conditioned_exp(xi).sum().backward()
    assert xi.grad is not None and torch.isfinite(xi.grad).all()
    # the clamped backward differs from the exact one only through the lifted singular values
    plain = xi.detach().clone().requires_grad_()
    lie.se3_exp(plain).sum().backward()
    assert plain.grad is not None and not torch.allclose(plain.grad, xi.grad)


def test_tangent_norm_penalty() -> None:
    std = torch.tensor([[0.1] * 6, [0.2] * 6])
    mean = torch.tensor([[0.0] * 6, [0.0, 0.0, 0.0, 0.0, 0.0, 3.0]])
    penalty = lie.tangent_norm_penalty(std, mean, weight=2.0)
    assert penalty[0] == pytest.approx(2.0 * 0.06)
    assert penalty[1] == pytest.approx(2.0 * (0.24 + (3.0 - math.pi / 2) ** 2))


@pytest.mark.parametrize("angle", [1e-5, 1e-4, 9.99e-3, 1e-2, 1.01e-2, 4.9e-2, 5.1e-2, 0.29, 0.31])
def test_jacobians_are_accurate_on_both_sides_of_the_taylor_switch(angle: float) -> None:
    xi = np.concatenate([[0.3, -0.2, 0.1], np.array([1.0, 1.0, 1.0]) / np.sqrt(3) * angle])
    jac = se3.se3_left_jacobian(xi)
    np.testing.assert_allclose(se3.se3_left_jacobian_inverse(xi) @ jac, np.eye(6), atol=1e-13)
    torch64 = lie.se3_left_jacobian(torch.tensor(xi)).numpy()
    np.testing.assert_allclose(torch64, jac, atol=1e-13)
    torch32 = lie.se3_left_jacobian(torch.tensor(xi, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(torch32, jac, atol=1e-6)
