"""Reward terms as pure functions, and the IMU vibration cleaning (method.md §3, §4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graspfleet.sim import reward as rw
from graspfleet.sim.config import RewardConfig

CONFIG = RewardConfig()


def test_composite_uses_the_seed_weights() -> None:
    ones = np.ones(1)
    assert rw.composite_task_reward(ones, 0 * ones, 0 * ones, CONFIG)[0] == pytest.approx(0.6)
    assert rw.composite_task_reward(0 * ones, ones, 0 * ones, CONFIG)[0] == pytest.approx(0.3)
    assert rw.composite_task_reward(0 * ones, 0 * ones, ones, CONFIG)[0] == pytest.approx(0.1)
    assert rw.composite_task_reward(ones, ones, ones, CONFIG)[0] == pytest.approx(1.0)


def test_position_reward_rewards_reach_and_lift() -> None:
    far = rw.position_reward(np.array([0.5]), np.array([0.0]), 0.1, 0.08)[0]
    near = rw.position_reward(np.array([0.0]), np.array([0.0]), 0.1, 0.08)[0]
    lifted = rw.position_reward(np.array([0.0]), np.array([0.2]), 0.1, 0.08)[0]
    assert far < near < lifted
    assert near == pytest.approx(0.5) and lifted == pytest.approx(1.0)


def test_force_reward_band() -> None:
    hold = rw.holding_force(np.array([0.2]), np.array([1.0]))  # 1.96 N
    forces = np.array([0.0, 2.0, 10.0, 35.0, 52.5, 70.0, 100.0])
    r = rw.force_reward(forces, np.repeat(hold, len(forces)), max_safe_force=35.0, safety=2.0)
    assert r[0] == 0.0
    assert 0.0 < r[1] < 1.0  # below 2 × holding force
    assert r[2] == 1.0 and r[3] == 1.0  # inside the band
    assert r[4] == pytest.approx(0.5)  # overshoot halfway to 2 × max
    assert r[5] == 0.0 and r[6] == 0.0


def test_slip_reward_only_while_grasped() -> None:
    r = rw.slip_reward(np.array([0.0, 0.05, 0.0]), np.array([True, True, False]), 0.05)
    np.testing.assert_allclose(r, [1.0, np.exp(-1.0), 0.0])


def test_manipulability_margin() -> None:
    s = rw.manipulability_margin(np.array([0.0, 0.04, 0.08, 0.5]), 0.08)
    np.testing.assert_allclose(s, [0.0, 0.5, 1.0, 1.0])


@settings(max_examples=100, deadline=None)
@given(d=st.floats(-1.0, 4.0, allow_nan=False))
def test_joint_limit_barrier_is_finite_nonnegative_and_zero_beyond_margin(d: float) -> None:
    b = rw.joint_limit_barrier(np.array([d]), CONFIG.joint_limit_margin, CONFIG.joint_limit_floor)[0]
    assert np.isfinite(b) and b >= 0.0
    assert b <= np.log(CONFIG.joint_limit_margin / CONFIG.joint_limit_floor) + 1e-12
    if d >= CONFIG.joint_limit_margin:
        assert b == 0.0


def test_joint_limit_barrier_grows_towards_the_bound() -> None:
    d = np.array([0.15, 0.1, 0.05, 0.01, 0.001, 0.0])
    b = rw.joint_limit_barrier(d, 0.15, 1e-3)
    assert np.all(np.diff(b) >= 0) and b[-2] == b[-1]


def test_smallest_singular_value() -> None:
    jac = np.stack([np.diag([1.0, 2.0, 3.0, 4.0, 5.0, 0.5]), np.eye(6) * 0.1])
    np.testing.assert_allclose(rw.smallest_singular_values(jac), [0.5, 0.1])


def _filter(samples: int = 20) -> rw.VibrationFilter:
    return rw.VibrationFilter(2, samples, CONFIG, dt=0.002)


def test_vibration_filter_rejects_a_3_sigma_spike() -> None:
    rng = np.random.default_rng(0)
    vib = _filter()
    gravity = np.array([0.0, 0.0, 9.81])
    for _ in range(20):
        vib.update(gravity + rng.normal(0, 0.5, (2, 20, 3)))
    rejected_before = vib.rejected.copy()
    level_before = vib.level.copy()
    step = gravity + rng.normal(0, 0.5, (2, 20, 3))
    step[0, 10] += 200.0  # one impact spike in cell 0
    level = vib.update(step)
    assert vib.rejected[0] > rejected_before[0]
    # the spike does not move the level more than ordinary noise does in the clean cell
    assert abs(level[0] - level_before[0]) < 1.0


def test_vibration_level_tracks_sustained_vibration() -> None:
    vib = _filter()
    t = np.arange(20) * 0.002
    still = np.tile([0.0, 0.0, 9.81], (2, 20, 1)).astype(float)
    for k in range(50):
        step = still.copy()
        step[1, :, 0] += 5.0 * np.sin(2 * np.pi * 60.0 * (t + k * 0.04))  # 60 Hz shaking in cell 1
        level = vib.update(step)
    assert level[0] < 0.05
    assert level[1] > 1.0


def test_vibration_reset_forgets_history() -> None:
    vib = _filter()
    vib.update(np.random.default_rng(1).normal(9.81, 3.0, (2, 20, 3)))
    vib.reset(np.array([True, False]))
    assert vib.level[0] == 0.0 and vib.count[0] == 0 and vib.count[1] == 20
