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

from .conftest import make_batch

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
    low_pose = pipeline.kinematics.tcp_pose(HOME)
    target = low_pose.copy()
    target[2, 3] = 0.02
    q_low, _ = pipeline.kinematics.solve(target, HOME, iterations=50, clip_to_limits=True)
    pipeline.reset(np.array([True]), q_low[None])
    step = pipeline(np.array([[0.0, 0.0, -0.03, 0.0, 0.0, 0.0, 0.05, 10.0]]), q_low[None])
    assert step.unreachable[0] and step.held[0]
    np.testing.assert_allclose(step.joint_action[0, :6], q_low)


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
