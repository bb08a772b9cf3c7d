"""Real MuJoCo grasp cells: tiers, repeatable episodes, outcome detection, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.policies import ScriptedGraspPolicy
from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import solve_ik, top_down_rotation
from graspfleet.sim.tiers import get_tier
from graspfleet.spec import ACTION_FIELDS
from tests.helpers import hold_action, make_batch


def _scenes(tier: str, episodes: int, seed: int = 0) -> list:  # type: ignore[type-arg]
    batch = make_batch(tier, cells=episodes, seed=seed)
    batch.reset()
    return [c.scene for c in batch.cells]


def test_t0_is_a_single_red_cube_near_the_centre() -> None:
    for scene in _scenes("T0", 12):
        assert scene.shapes == ("cube",) and scene.colours == ("red",)
        assert np.all(np.abs(scene.positions[0, :2]) <= 0.02)
        assert scene.yaws[0] == 0.0


def test_t1_randomizes_pose_and_yaw() -> None:
    scenes = _scenes("T1", 12)
    xy = np.array([s.positions[0, :2] for s in scenes])
    yaws = np.array([s.yaws[0] for s in scenes])
    assert np.ptp(xy[:, 0]) > 0.08 and np.ptp(xy[:, 1]) > 0.08
    assert np.ptp(yaws) > 1.5


def test_t2_varies_shapes_sizes_and_masses() -> None:
    scenes = _scenes("T2", 24)
    assert {s.shapes[0] for s in scenes} == {"cube", "cylinder", "ball"}
    assert np.ptp([s.half_sizes[0] for s in scenes]) > 0.008
    masses = [s.physics.object_mass for s in scenes]
    assert np.ptp(masses) > 0.15 and min(masses) >= 0.08 and max(masses) <= 0.5


def test_t3_places_distinct_distractors_apart() -> None:
    tier = get_tier("T3")
    for scene in _scenes("T3", 10):
        assert len(scene.shapes) == 4
        assert len(set(zip(scene.colours, scene.shapes, strict=True))) == 4
        gaps = [np.linalg.norm(scene.positions[i, :2] - scene.positions[j, :2]) for i in range(4) for j in range(i)]
        assert min(gaps) >= tier.min_object_spacing


def test_randomization_reaches_the_model() -> None:
    batch = make_batch("T4", cells=1, seed=11)
    batch.reset()
    cell = batch.cells[0]
    scene = cell.scene
    assert scene is not None
    m, idx = cell.model, cell.index
    body = idx.object_bodies[scene.target]
    assert m.body_mass[body] == pytest.approx(scene.physics.object_mass)
    np.testing.assert_allclose(m.body_ipos[body], scene.physics.object_com_offset)
    assert m.geom_friction[idx.object_geoms[scene.target], 0] == pytest.approx(scene.physics.object_friction)
    assert m.dof_damping[idx.arm_dof[0]] == pytest.approx(scene.physics.joint_damping)
    assert m.actuator_gainprm[idx.arm_actuators[0], 0] == pytest.approx(600.0 * scene.physics.actuator_gain_scale)


def test_backlash_deadband_holds_small_reversals() -> None:
    batch = make_batch("T0", cells=1, seed=0)
    batch.reset()
    cell = batch.cells[0]
    assert cell.scene is not None
    cell.scene = cell.scene._replace(physics=cell.scene.physics._replace(backlash=0.02))
    home = cell.home_qpos.copy()
    imu = np.zeros((batch.config.physics.control_substeps, 6))
    cell.act(home + 0.05, 0.09, 10.0, imu)
    np.testing.assert_allclose(cell.transmitted_target, home + 0.05 - 0.01)
    cell.act(home + 0.045, 0.09, 10.0, imu)  # reversal smaller than the play: nothing moves
    np.testing.assert_allclose(cell.transmitted_target, home + 0.04)
    cell.act(home + 0.02, 0.09, 10.0, imu)  # beyond the play: follows at the far edge
    np.testing.assert_allclose(cell.transmitted_target, home + 0.03)


def _rollout(batch: GraspCellBatch, steps: int) -> list[dict[str, np.ndarray]]:
    policy = ScriptedGraspPolicy(batch.config, batch.num_cells)
    backend = CartesianBackend(batch, batch.config)
    obs, _ = backend.reset(seed=42)
    trace = [obs]
    for _ in range(steps):
        obs, *_ = backend.step(policy.act(obs))
        trace.append({k: v.copy() for k, v in obs.items()})
    return trace


def test_same_seed_same_episode_different_seed_different_episode() -> None:
    a = _rollout(make_batch("T2", cells=2, seed=0), 30)
    b = _rollout(make_batch("T2", cells=2, seed=99), 30)  # reset(seed=42) reseeds both
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    c_batch = make_batch("T2", cells=2)
    policy = ScriptedGraspPolicy(c_batch.config, 2)
    obs, _ = c_batch.reset(seed=43)
    assert not np.array_equal(obs["privileged"], a[0]["privileged"])
    del policy


def _run_scripted(batch: GraspCellBatch, policy: ScriptedGraspPolicy, max_steps: int = 300) -> dict[str, np.ndarray]:
    backend = CartesianBackend(batch, batch.config)
    obs, _ = backend.reset()
    for _ in range(max_steps):
        obs, _, terminated, truncated, info = backend.step(policy.act(obs))
        if terminated[0] or truncated[0]:
            return info
    raise AssertionError("episode did not end")


def test_scripted_grasp_succeeds_and_terminates() -> None:
    batch = make_batch("T0", cells=1, seed=0)
    info = _run_scripted(batch, ScriptedGraspPolicy(batch.config, 1))
    assert info["outcome_success"][0] and not info["outcome_collision"][0]
    assert not info["outcome_slip"][0] and not info["outcome_force_overshoot"][0]
    assert info["episode_length"][0] < batch.config.outcome.max_episode_steps
    assert info["r_success"][0] == batch.config.reward.success_bonus
    assert "final_observation" in info


def test_crushing_grip_is_a_force_overshoot() -> None:
    batch = make_batch("T0", cells=1, seed=0)
    info = _run_scripted(batch, ScriptedGraspPolicy(batch.config, 1, max_grip_force=60.0, min_grip_force=60.0))
    assert info["outcome_force_overshoot"][0]


def test_pressing_into_the_table_is_a_collision() -> None:
    batch = make_batch("T0", cells=1, seed=0, autoreset=False)
    batch.reset()
    cell = batch.cells[0]
    target, _ = solve_ik(
        cell.model,
        cell.data,
        cell.index,
        np.array([0.1, 0.2, -0.08]),
        top_down_rotation(0.0),
        cell.home_qpos,
        50,
    )
    batch.reset()
    for _ in range(60):
        _, _, terminated, _, info = batch.step(np.concatenate([target, [0.09, 10.0]])[None])
        if terminated[0]:
            break
    assert terminated[0] and info["outcome_collision"][0] and not info["outcome_success"][0]
    assert info["r_collision"][0] == -batch.config.reward.collision_penalty


def test_opening_the_gripper_while_lifted_is_a_slip() -> None:
    batch = make_batch("T0", cells=1, seed=0, autoreset=False)
    policy = ScriptedGraspPolicy(batch.config, 1)
    backend = CartesianBackend(batch, batch.config)
    obs, _ = backend.reset()
    lifted = False
    for _ in range(200):
        action = policy.act(obs)
        if lifted:
            action[0, 6] = batch.config.gripper.max_width  # let go
        obs, _, terminated, truncated, info = backend.step(action)
        lifted = lifted or (info["grasped"][0] and info["lift"][0] > 0.03)
        if terminated[0] or truncated[0]:
            break
    assert lifted
    assert batch.outcome["slip"][0] and not batch.outcome["success"][0]


def test_truncation_at_max_episode_steps() -> None:
    config = dataclasses.replace(CellConfig(), outcome=dataclasses.replace(CellConfig().outcome, max_episode_steps=5))
    batch = GraspCellBatch(config, get_tier("T0"), num_cells=2, seed=0)
    batch.reset()
    for _ in range(5):
        _, _, terminated, truncated, info = batch.step(hold_action(batch))
    assert truncated.all() and not terminated.any()
    assert (info["episode_length"] == 5).all()
    assert (batch.episode_step == 0).all()  # autoreset started new episodes


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (0, np.nan, r"action\[1\]\.joint_target_0 is nan \(must be finite\)"),
        (7, np.inf, r"action\[1\]\.grip_force is inf"),
        (2, 5.0, r"action\[1\]\.joint_target_2 = 5 is outside \[-2\.6, 2\.6\]"),
        (6, 0.5, r"action\[1\]\.gripper_width = 0\.5 is outside \[0, 0\.09\]"),
        (7, -1.0, r"action\[1\]\.grip_force = -1 is outside"),
    ],
)
def test_bad_actions_are_refused_by_name_and_advance_nothing(field: int, value: float, message: str) -> None:
    batch = make_batch("T0", cells=2, seed=0)
    batch.reset()
    action = hold_action(batch)
    batch.step(action)
    before = [c.data.qpos.copy() for c in batch.cells]
    steps = batch.episode_step.copy()
    bad = action.copy()
    bad[1, field] = value
    with pytest.raises(ValueError, match=message):
        batch.step(bad)
    for cell, qpos in zip(batch.cells, before, strict=True):
        np.testing.assert_array_equal(cell.data.qpos, qpos)
    np.testing.assert_array_equal(batch.episode_step, steps)
    batch.step(action)  # still serving


def test_wrong_action_shape_and_dtype_are_refused() -> None:
    batch = make_batch("T0", cells=2)
    batch.reset()
    with pytest.raises(ValueError, match=r"expected shape \(2, 8\)"):
        batch.step(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="expected real numbers"):
        batch.step(np.full((2, 8), "x"))
    assert len(ACTION_FIELDS) == 8
