"""The scripted experts: the memoryless one grasps, and its action is a function of the observation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.policies import ReactiveGraspPolicy, make_expert
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import top_down_rotation
from graspfleet.sim.runner import run_episodes
from tests.helpers import make_batch

CELL = CellConfig()


def test_reactive_expert_grasps_t0_in_at_least_90_percent_of_200_seeded_episodes() -> None:
    backend = CartesianBackend(make_batch("T0", cells=16, seed=0), CELL)
    summary = run_episodes(backend, ReactiveGraspPolicy(CELL, 16), episodes=200, seed=2026)
    assert summary.rate("success") >= 0.9
    assert summary.holds == 0 and summary.out_of_bounds_proposed == 0


def test_reactive_expert_acts_on_the_observation_alone() -> None:
    """Mid-episode, a policy that drove the cell so far and a fresh one command the same action."""
    backend = CartesianBackend(make_batch("T1", cells=4, seed=3), CELL)
    driver = ReactiveGraspPolicy(CELL, 4)
    obs, _ = backend.reset(seed=3)
    for step in range(60):
        if step % 10 == 0:
            np.testing.assert_array_equal(ReactiveGraspPolicy(CELL, 4).act(obs), driver.act(obs))
        obs, *_ = backend.step(driver.act(obs))


def _tcp_rotations(yaws: np.ndarray) -> np.ndarray:
    return np.stack([top_down_rotation(float(y)) for y in yaws])


def test_reactive_yaw_turns_at_most_a_quarter_turn_to_the_nearest_faces() -> None:
    policy = ReactiveGraspPolicy(CELL, 3)
    object_yaw = np.array([0.0, 1.2, -3.0])
    upright = np.stack([np.cos(object_yaw / 2), 0 * object_yaw, 0 * object_yaw, np.sin(object_yaw / 2)], axis=1)
    tcp_yaw = np.array([0.7, -0.4, 2.0])
    yaw = policy.grasp_yaw(upright, _tcp_rotations(tcp_yaw))
    assert np.all(np.abs(yaw - tcp_yaw) <= math.pi / 4 + 1e-9)
    faces = (yaw - object_yaw) / (math.pi / 2)  # a face-aligned yaw: a whole number of quarter turns away
    np.testing.assert_allclose(faces, np.round(faces), atol=1e-9)


def test_reactive_yaw_keeps_the_tcps_over_an_object_that_is_not_upright() -> None:
    policy = ReactiveGraspPolicy(CELL, 1)
    tipped = np.array([[math.cos(0.4), math.sin(0.4), 0.0, 0.0]])  # 0.8 rad about x
    np.testing.assert_allclose(policy.grasp_yaw(tipped, _tcp_rotations(np.array([0.3]))), [0.3])


def test_make_expert_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="expert: expected one of"):
        make_expert("joystick", CELL, 1)  # type: ignore[arg-type]


def _observation_at_home(cells: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A real first observation and the cells' TCP positions (m)."""
    obs, _ = make_batch("T0", cells=cells, seed=1).reset(seed=1)
    tcp = ReactiveGraspPolicy(CELL, cells).kinematics.tcp_pose(obs["proprio"][:, :6].astype(np.float64))[:, :3, 3]
    return {k: v.copy() for k, v in obs.items()}, tcp


def test_reactive_expert_decides_from_pads_and_pose() -> None:
    """Cell 0: the target right at the TCP → close in place. Cell 1: both pads press → close and
    rise. Cell 2: one pad presses, target far away → keep closing. Cell 3: nothing felt, target
    far below → open and move towards it."""
    obs, tcp = _observation_at_home(4)
    policy = ReactiveGraspPolicy(CELL, 4, carry_height=float(tcp[1, 2]) + 0.1)
    obs["privileged"][:, :3] = tcp + np.array([0.0, 0.0, -0.3])
    obs["privileged"][0, :3] = tcp[0]
    obs["tactile"][:] = 0.0
    obs["tactile"][1] = 2 * policy.contact_pressure
    obs["tactile"][2, 0] = 2 * policy.contact_pressure
    actions = policy.act(obs)
    open_width = CELL.gripper.max_width
    np.testing.assert_array_equal(actions[:, 6], [0.0, 0.0, 0.0, open_width])
    assert np.linalg.norm(actions[0, :3]) < 1e-3 and np.linalg.norm(actions[2, :3]) < 1e-3  # held in place
    assert actions[1, 2] > 0.0  # carried up, towards carry_height
    assert actions[3, 2] < 0.0  # on its way down to the target
