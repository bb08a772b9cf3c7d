"""The safe action pipeline: nothing outside the joint limits ever leaves it."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.actions.config import ActionConfig
from graspfleet.actions.pipeline import SafeActionPipeline
from graspfleet.policies import RandomCartesianPolicy, ScriptedGraspPolicy
from graspfleet.sim.config import CellConfig
from graspfleet.sim.env import CARTESIAN_ENV_ID
from graspfleet.sim.runner import run_episodes
from tests.helpers import make_batch

CELL = CellConfig()
HOME = np.array([0.0, 0.5, 1.3, 0.0, 1.2, 0.0])
PIPELINE = SafeActionPipeline(CELL, ActionConfig(), 1)
PERMISSIVE = SafeActionPipeline(
    CELL, ActionConfig(max_translation_step=1.0, max_rotation_step=math.pi, max_joint_step=3.0), 1
)
LOW, HIGH = PIPELINE.low, PIPELINE.high

extreme = st.one_of(
    st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
    st.floats(-1.0, 1.0),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-300, 1e300, -1e300]),
)
actions = arrays(np.float64, (1, 8), elements=extreme)


@st.composite
def arm_states(draw: st.DrawFn) -> np.ndarray:
    """Joint angles inside the limits, near-singular ones among them (elbow straight, wrist
    axes aligned), near the limits, and a little outside them (sensor noise)."""
    kind = draw(st.sampled_from(["uniform", "singular", "edge", "noisy"]))
    q = np.array([draw(st.floats(lo, hi)) for lo, hi in zip(LOW, HIGH, strict=True)])
    if kind == "singular":
        q[2] = draw(st.floats(-1e-3, 1e-3))
        q[4] = draw(st.floats(-1e-3, 1e-3))
    elif kind == "edge":
        j = draw(st.integers(0, 5))
        q[j] = HIGH[j] - draw(st.floats(0.0, 0.05)) if draw(st.booleans()) else LOW[j] + draw(st.floats(0.0, 0.05))
    elif kind == "noisy":
        q += np.array([draw(st.floats(-0.01, 0.01)) for _ in range(6)])
    return q


def _inside(step_action: np.ndarray) -> bool:
    joints, width, force = step_action[:, :6], step_action[:, 6], step_action[:, 7]
    return bool(
        np.all(np.isfinite(step_action))
        and np.all(joints >= LOW)
        and np.all(joints <= HIGH)
        and np.all((width >= 0) & (width <= CELL.gripper.max_width))
        and np.all((force >= 0) & (force <= CELL.gripper.max_force))
    )


@settings(max_examples=150, deadline=None)
@given(outputs=st.lists(actions, min_size=1, max_size=4), state=arm_states())
def test_commands_stay_inside_the_limits_for_any_output(outputs: list[np.ndarray], state: np.ndarray) -> None:
    for pipeline in (PIPELINE, PERMISSIVE):
        pipeline.reset(np.array([True]), state[None])
        q = state[None]
        for output in outputs:
            step = pipeline(output, q)
            assert _inside(step.joint_action)
            assert np.all(np.isfinite(step.pose_command))
            q = step.joint_action[:, :6]


@settings(max_examples=60, deadline=None)
@given(state=arm_states(), axis=arrays(np.float64, 3, elements=st.floats(-1, 1)), delta=st.floats(-1e-3, 1e-3))
def test_rotations_near_pi(state: np.ndarray, axis: np.ndarray, delta: float) -> None:
    norm = np.linalg.norm(axis)
    direction = axis / norm if norm > 1e-6 else np.array([0.0, 0.0, 1.0])
    action = np.concatenate([[0.0, 0.0, 0.0], direction * (math.pi + delta), [0.05, 10.0]])[None]
    PERMISSIVE.reset(np.array([True]), state[None])
    step = PERMISSIVE(action, state[None])
    assert _inside(step.joint_action)


def test_raw_proposals_outside_the_limits_are_flagged_and_never_commanded() -> None:
    pipeline = SafeActionPipeline(CELL, ActionConfig(max_rotation_step=math.pi, max_joint_step=3.0), 1)
    q = HOME.copy()
    q[5] = HIGH[5] - 0.1
    pipeline.reset(np.array([True]), q[None])
    action = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, -2.0, 0.05, 10.0]])  # spin the wrist past its limit
    step = pipeline(action, q[None])
    assert step.proposed_outside_joint_limits[0] and step.out_of_bounds_proposed[0]
    assert _inside(step.joint_action)


@pytest.mark.parametrize(("field", "value"), [(0, np.nan), (4, np.inf), (7, -np.inf)])
def test_nonfinite_outputs_are_refused_by_name(field: int, value: float) -> None:
    pipeline = SafeActionPipeline(CELL, ActionConfig(), 2)
    pipeline.reset(np.ones(2, dtype=bool), np.tile(HOME, (2, 1)))
    action = np.zeros((2, 8))
    action[1, field] = value
    names = ("rho_x", "rho_y", "rho_z", "omega_x", "omega_y", "omega_z", "gripper_width", "grip_force")
    with pytest.raises(ValueError, match=rf"cartesian action\[1\]\.{names[field]} is (nan|inf|-inf)"):
        pipeline(action, np.tile(HOME, (2, 1)))
    with pytest.raises(ValueError, match=r"expected shape \(2, 8\)"):
        pipeline(np.zeros((2, 6)), np.tile(HOME, (2, 1)))


def test_in_the_actor_runtime_nonfinite_outputs_become_counted_holds() -> None:
    pipeline = SafeActionPipeline(CELL, ActionConfig(), 2)
    joints = np.tile(HOME, (2, 1))
    pipeline.reset(np.ones(2, dtype=bool), joints)
    first = pipeline(np.array([[0.01, 0, 0, 0, 0, 0, 0.05, 10.0]] * 2), joints, strict=False)
    bad = np.array([[0.01, 0, 0, 0, 0, 0, 0.05, 10.0], [np.nan, 0, 0, 0, 0, 0, 0.05, 10.0]])
    second = pipeline(bad, first.joint_action[:, :6], strict=False)
    assert second.nonfinite.tolist() == [False, True]
    assert second.held.tolist() == [False, True]
    np.testing.assert_array_equal(second.joint_action[1], first.joint_action[1])  # zero-order hold
    assert second.slowdown[1] and not second.slowdown[0]
    assert pipeline.holds.tolist() == [0, 1]
    assert pipeline.hold_seconds[1] == pytest.approx(CELL.physics.control_period)


def test_slowdown_scales_the_next_joint_steps() -> None:
    config = ActionConfig(max_joint_step=0.1, slowdown_factor=0.5, slowdown_cycles=2)
    pipeline = SafeActionPipeline(CELL, config, 1)
    pipeline.reset(np.array([True]), HOME[None])
    pipeline(np.array([[np.nan] * 8]), HOME[None], strict=False)  # hold → slow-down
    big = np.array([[0.03, 0.0, 0.0, 0.0, 0.0, 0.25, 0.05, 10.0]])
    step = pipeline(big, HOME[None])
    assert np.abs(step.joint_action[0, :6] - HOME).max() <= 0.05 + 1e-12
    assert step.slowdown[0]


def test_a_command_below_the_table_is_unreachable_and_held() -> None:
    pipeline = SafeActionPipeline(CELL, ActionConfig(), 1)
    target = pipeline.kinematics.tcp_pose(HOME[None])
    target[0, 2, 3] = 0.02
    q_low, _ = pipeline.kinematics.solve(target, HOME[None], iterations=50, clip_to_limits=True)
    pipeline.reset(np.array([True]), q_low)
    step = pipeline(np.array([[0.0, 0.0, -0.03, 0.0, 0.0, 0.0, 0.05, 10.0]]), q_low)
    assert step.unreachable[0] and step.held[0]
    np.testing.assert_allclose(step.joint_action[0, :6], q_low[0])


def test_the_cache_holds_when_the_next_cycle_would_breach_a_limit() -> None:
    config = ActionConfig(max_joint_step=0.1, limit_margin=0.02)
    pipeline = SafeActionPipeline(CELL, config, 1)
    q = HOME.copy()
    q[5] = HIGH[5] - 0.3  # step 1 reaches HIGH − 0.2 (next: HIGH − 0.1, fine); step 2 would extrapolate to HIGH
    pipeline.reset(np.array([True]), q[None])
    spin = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, -0.25, 0.05, 10.0]])  # tool z points down: −ω_z turns q6 up
    first = pipeline(spin, q[None])
    assert not first.held[0] and first.joint_action[0, 5] > q[5]
    second = pipeline(spin, first.joint_action[:, :6])
    assert second.held[0] and second.slowdown[0]
    np.testing.assert_array_equal(second.joint_action, first.joint_action)


def test_cartesian_env_passes_checks_and_reports_safety_info() -> None:
    env = gym.make(CARTESIAN_ENV_ID, tier="T0")
    with pytest.warns(UserWarning):
        check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert {"out_of_bounds_proposed", "held", "slowdown", "pose_command"} <= set(info)


def test_random_policy_proposes_out_of_bounds_but_commands_stay_inside() -> None:
    backend = CartesianBackend(make_batch("T1", cells=4, seed=0), CELL)
    policy = RandomCartesianPolicy(CELL, 4, seed=0)
    obs, _ = backend.reset(seed=0)
    proposed = 0
    for _ in range(40):
        obs, *_, info = backend.step(policy.act(obs))
        proposed += int(info["out_of_bounds_proposed"].sum())
        assert _inside(info["joint_action"])
    assert proposed > 0


def test_pose_commands_keep_their_quaternion_sign_through_a_grasp() -> None:
    backend = CartesianBackend(make_batch("T1", cells=4, seed=5), CELL)
    policy = ScriptedGraspPolicy(CELL, 4)
    obs, _ = backend.reset(seed=5)
    previous = None
    started = np.ones(4, dtype=bool)  # a new episode's first command is not locked to the last one's
    for _ in range(60):
        obs, _, terminated, truncated, info = backend.step(policy.act(obs))
        quats = info["pose_command"][:, 3:]
        if previous is not None:
            assert np.all(np.sum(quats * previous, axis=1)[~started] > 0)
        previous = quats
        started = terminated | truncated
        policy.reset(started)


def test_scripted_controller_grasps_t0_in_at_least_90_percent_of_200_seeded_episodes() -> None:
    backend = CartesianBackend(make_batch("T0", cells=16, seed=0), CELL)
    summary = run_episodes(backend, ScriptedGraspPolicy(CELL, 16), episodes=200, seed=2026)
    assert summary.episodes == 200
    assert summary.rate("success") >= 0.9
    assert summary.holds == 0  # the fallback never needs the safety net on T0
    assert summary.out_of_bounds_proposed == 0


def test_one_ik_iteration_is_the_damped_least_squares_step() -> None:
    """solve_ik's buffered Cholesky loop takes exactly the step Δq = Jᵀ(JJᵀ + λ²I)⁻¹e, computed
    here the textbook way from the TCP Jacobian and pose at the start."""
    from graspfleet.geometry import se3
    from graspfleet.sim.kinematics import ArmKinematics, solve_ik

    kinematics = ArmKinematics(CellConfig())
    rng = np.random.default_rng(7)
    weights = np.array([1.0, 1.0, 1.0, 0.3, 0.3, 0.3])
    for _ in range(20):
        q0 = rng.uniform(kinematics.joint_low, kinematics.joint_high) * 0.5
        pose, jac = kinematics.tcp_pose_and_jacobian(q0)
        target = se3.apply_twist_at_point(rng.normal(size=6) * 0.05, pose)
        rotation = se3.so3_log(target[:3, :3] @ pose[:3, :3].T)  # world-frame rotation error
        e = np.concatenate([target[:3, 3] - pose[:3, 3], rotation]) * weights
        j = jac * weights[:, None]
        expected = q0 + j.T @ np.linalg.solve(j @ j.T + 0.05**2 * np.eye(6), e)
        q1, _ = solve_ik(
            kinematics.model, kinematics.data, kinematics.index, target[:3, 3], target[:3, :3], q0, 1, 0.05, 0.3, False
        )
        np.testing.assert_allclose(q1, expected, atol=1e-9)


def _random_targets(rng: np.random.Generator, poses: np.ndarray, max_angle: float) -> np.ndarray:
    """Targets a twist away from ``poses``: translations up to a few centimetres, rotations of
    any direction with angles spread up to ``max_angle``."""
    from graspfleet.geometry import se3

    n = len(poses)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    twists = np.concatenate([rng.normal(size=(n, 3)) * 0.02, axes * rng.uniform(0.0, max_angle, (n, 1))], axis=1)
    return se3.apply_twist_at_point(twists, poses)


def test_batch_kinematics_match_mujoco_for_every_cell() -> None:
    """The pipeline's NumPy chain gives MuJoCo's TCP pose and Jacobian, singular and limit
    configurations among them, for a batch at once."""
    from graspfleet.sim.kinematics import ArmKinematics

    reference = ArmKinematics(CELL)
    rng = np.random.default_rng(3)
    q = rng.uniform(LOW, HIGH, size=(200, 6))
    q[:20, 2] = 0.0  # elbow straight
    q[20:40, 4] = 0.0  # wrist axes aligned
    q[40:60] = np.where(rng.random((20, 6)) < 0.5, LOW, HIGH)
    poses, jacobians = PIPELINE.kinematics.tcp_pose_and_jacobian(q)
    for i in range(len(q)):
        pose, jacobian = reference.tcp_pose_and_jacobian(q[i])
        np.testing.assert_allclose(poses[i], pose, atol=1e-12)
        np.testing.assert_allclose(jacobians[i], jacobian, atol=1e-12)


@pytest.mark.parametrize("clip_to_limits", [False, True])
def test_batch_ik_takes_mujocos_iterates(clip_to_limits: bool) -> None:
    """The batched DLS IK ends where the per-cell MuJoCo IK does, with the same remaining error,
    for rotation errors up to near π (past π/2 its rotation error takes the quaternion route)."""
    from graspfleet.sim.kinematics import ArmKinematics

    reference = ArmKinematics(CELL)
    rng = np.random.default_rng(4)
    q = rng.uniform(LOW, HIGH, size=(120, 6)) * 0.8
    targets = _random_targets(rng, PIPELINE.kinematics.tcp_pose(q), max_angle=3.1)
    solved, errors = PIPELINE.kinematics.solve(targets, q, 5, 0.05, 0.3, clip_to_limits)
    for i in range(len(q)):
        expected, error = reference.solve(targets[i], q[i], 5, 0.05, 0.3, clip_to_limits)
        np.testing.assert_allclose(solved[i], expected, atol=1e-9)
        assert errors[i] == pytest.approx(error, abs=1e-9)


def test_every_pose_command_is_the_pose_of_the_joint_command_sent() -> None:
    """In a batch where some cells hold and others move, each cell's pose command is the TCP pose
    (MuJoCo's) of its own joint command: the held cells' that of the command they hold, not that
    of the measured joints."""
    from graspfleet.sim.kinematics import ArmKinematics

    reference = ArmKinematics(CELL)
    pipeline = SafeActionPipeline(CELL, ActionConfig(), 6)
    joints = np.tile(HOME, (6, 1))
    pipeline.reset(np.ones(6, dtype=bool), joints)
    moves = np.tile([0.01, 0.0, 0.0, 0.0, 0.0, 0.1, 0.05, 10.0], (6, 1))
    pipeline(moves, joints)
    moves[[1, 4]] = np.nan  # these two hold the first step's command; the arms have not moved yet
    step = pipeline(moves, joints, strict=False)
    assert step.held.tolist() == [False, True, False, False, True, False]
    assert not np.allclose(step.joint_action[1, :6], HOME)
    for i in range(6):
        pose = reference.tcp_pose(step.joint_action[i, :6])
        np.testing.assert_allclose(step.pose_command[i, :3], pose[:3, 3], atol=1e-12)
        np.testing.assert_allclose(np.abs(step.pose_command[i, 3:] @ _quaternion_xyzw(pose[:3, :3])), 1.0, atol=1e-12)
    assert not np.allclose(step.joint_action[0, :6], HOME)


def _quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    from graspfleet.geometry import se3

    return se3.matrix_to_quaternion(rotation)


def test_rotation_errors_keep_their_axis_up_to_pi() -> None:
    """The IK's rotation error is the rotation vector between the poses, small angles and angles a
    hair below π (where the matrix's skew part is only rounding) alike."""
    from graspfleet.geometry import se3
    from graspfleet.sim.kinematics import rotation_error

    rng = np.random.default_rng(5)
    axes = rng.normal(size=(64, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([np.geomspace(1e-9, 0.3, 32), math.pi - np.geomspace(1e-9, 1.0, 32)])
    current = se3.so3_exp(rng.normal(size=(64, 3)))
    target = se3.so3_exp(axes * angles[:, None]) @ current
    np.testing.assert_allclose(rotation_error(target, current), axes * angles[:, None], atol=1e-12)


def test_the_torch_chain_is_mujocos_arm_and_its_penalty_is_zero_where_the_pipeline_passes() -> None:
    """The learner-side kinematics agree with MuJoCo's, and the reachability penalty is positive
    exactly for commands the pipeline would find unreachable (outside the workspace or σ_min too small)."""
    import torch

    from graspfleet.actions.ik_torch import TorchArmKinematics
    from graspfleet.sim.kinematics import ArmKinematics

    reference = ArmKinematics(CELL)
    arm = TorchArmKinematics(CELL)
    config = ActionConfig()
    rng = np.random.default_rng(6)
    q = np.clip(HOME + rng.normal(size=(100, 6)) * 0.5, LOW, HIGH)
    q[:10, 2] = 0.0  # elbow straight: σ_min ≈ 0
    poses, jacobians = arm.jacobian(torch.as_tensor(q))
    penalty = arm.reachability_penalty(torch.as_tensor(q), config).numpy()
    for i in range(len(q)):
        pose, jacobian = reference.tcp_pose_and_jacobian(q[i])
        np.testing.assert_allclose(poses[i].numpy(), pose, atol=1e-12)
        np.testing.assert_allclose(jacobians[i].numpy(), jacobian, atol=1e-12)
        bounds = (config.workspace_x, config.workspace_y, config.workspace_z)
        inside = all(b.low <= pose[axis, 3] <= b.high for axis, b in enumerate(bounds))
        passes = inside and np.linalg.svd(jacobian, compute_uv=False)[-1] > config.min_singular_value
        assert (penalty[i] == 0.0) == passes
    assert 10 <= (penalty > 0).sum() <= 90  # both sides of the boundary are exercised


def test_the_command_penalty_flags_what_the_pipeline_proposes_beyond_a_joint_limit_and_its_gradient_backs_off() -> None:
    """The learner's IK penalty takes a twist the way the pipeline does: every command whose IK
    proposal the pipeline flags as outside the joint limits is penalized, a small twist from the
    home pose is not, and a gradient step on the twist lowers the penalty where it is positive."""
    import torch

    from graspfleet.actions.ik_torch import TorchArmKinematics

    arm = TorchArmKinematics(CELL)
    config = ActionConfig()
    rng = np.random.default_rng(7)
    n = 200
    # joints near their limits, twists of up to the full step: many proposals cross a limit
    q = np.clip(np.where(rng.random((n, 6)) < 0.5, LOW + 0.03, HIGH - 0.03) * rng.uniform(0.9, 1.0, (n, 6)), LOW, HIGH)
    twist = rng.uniform(-1, 1, (n, 6)) * np.array([config.max_translation_step] * 3 + [config.max_rotation_step] * 3)
    twist /= np.maximum(1.0, np.abs(twist[:, 3:]).sum(1, keepdims=True) / config.max_rotation_step)  # inside the step
    pipeline = SafeActionPipeline(CELL, config, n)
    pipeline.reset(np.ones(n, dtype=bool), q)
    gripper = np.tile([0.04, 5.0], (n, 1))
    flagged = pipeline(np.concatenate([twist, gripper], 1), q).proposed_outside_joint_limits
    xi = torch.tensor(twist, requires_grad=True)
    penalty = arm.command_penalty(torch.as_tensor(q), xi, config)
    assert flagged.sum() >= 10
    assert bool((penalty.detach().numpy()[flagged] > 0).all())
    home = torch.as_tensor(HOME[None])
    assert float(arm.command_penalty(home, torch.full((1, 6), 1e-3, dtype=torch.float64), config)[0]) == 0.0
    penalty.sum().backward()
    assert xi.grad is not None and bool(torch.isfinite(xi.grad).all())
    positive = penalty.detach() > 0
    stepped = arm.command_penalty(torch.as_tensor(q), (xi - 1e-3 * xi.grad).detach(), config)
    assert float(stepped[positive].sum()) < float(penalty.detach()[positive].sum())
