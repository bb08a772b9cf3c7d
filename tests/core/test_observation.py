"""The multimodal observation of real MuJoCo cells matches its one spec, and each modality
measures what it claims to."""

from __future__ import annotations

import numpy as np
import pytest

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.policies import ScriptedGraspPolicy
from graspfleet.sim.camera import RayCamera
from graspfleet.sim.instruction import decode
from graspfleet.sim.tiers import TIER_ORDER
from graspfleet.spec import MASK_KEY, MODALITIES, observation_spec
from tests.helpers import hold_action, make_batch


@pytest.mark.parametrize("tier", TIER_ORDER)
def test_observation_matches_spec_every_step(tier: str) -> None:
    batch = make_batch(tier, cells=3, seed=1)
    spec = observation_spec(batch.config)
    assert set(spec) == {*MODALITIES, MASK_KEY}
    obs, _ = batch.reset()
    for _ in range(3):
        for name, s in spec.items():
            s.check(obs[name], batched=True)
            assert obs[name].shape[0] == 3
            if name != MASK_KEY and np.issubdtype(s.dtype, np.number):
                assert obs[name].min() >= s.low and obs[name].max() <= s.high, name
        obs, *_ = batch.step(hold_action(batch))


def test_imu_has_one_sample_per_physics_step(cell_config) -> None:  # type: ignore[no-untyped-def]
    batch = make_batch("T0", cells=1)
    batch.reset()
    obs, *_ = batch.step(hold_action(batch))
    assert obs["imu"].shape == (1, cell_config.physics.control_substeps, 6)
    # a still wrist measures gravity's reaction: |a| ≈ 9.81 m/s² on every sample
    np.testing.assert_allclose(np.linalg.norm(obs["imu"][0, :, :3], axis=1), 9.81, atol=0.5)


def test_instruction_names_the_target_and_privileged_holds_its_pose() -> None:
    batch = make_batch("T3", cells=2, seed=3)
    obs, info = batch.reset()
    for i, cell in enumerate(batch.cells):
        scene = cell.scene
        assert scene is not None
        text = decode(obs["instruction"][i])
        assert (
            text == info["instruction"][i] == f"pick up the {scene.colours[scene.target]} {scene.shapes[scene.target]}"
        )
        # exactly one object matches the instruction
        matches = [(c, s) for c, s in zip(scene.colours, scene.shapes, strict=True) if f"{c} {s}" in text]
        assert len(matches) == 1
        np.testing.assert_allclose(obs["privileged"][i, :3], scene.positions[scene.target], atol=2e-3)
        assert obs["privileged"][i, 7] == pytest.approx(scene.physics.object_mass, rel=1e-5)
        assert obs["privileged"][i, 8] == pytest.approx(scene.physics.object_friction, rel=1e-5)


def _project(camera: RayCamera, point: np.ndarray) -> tuple[int, int, float]:
    local = camera.rotation.T @ (point - camera.origin)
    cfg = camera.config
    focal = (cfg.height / 2.0) / np.tan(np.deg2rad(cfg.vertical_fov_deg) / 2.0)
    col = int(local[0] / local[2] * focal + cfg.width / 2.0)
    row = int(local[1] / local[2] * focal + cfg.height / 2.0)
    return row, col, float(local[2])


def test_depth_and_rgb_see_the_object() -> None:
    batch = make_batch("T0", cells=1, seed=0)
    obs, _ = batch.reset()
    cell = batch.cells[0]
    assert cell.scene is not None
    top = cell.scene.positions[0] + np.array([0.0, 0.0, cell.scene.half_sizes[0]])
    row, col, z = _project(cell.camera, top)
    depth = obs["depth"][0]
    # the cube's top face is at the projected depth (noise ≈ 2 mm)
    assert depth[row, col] == pytest.approx(z, abs=0.02)
    # without the cube, that pixel's ray would reach the table plane z = 0 further away
    ray = cell.camera.rays_world[row * cell.camera.config.width + col]
    table_depth = -cell.camera.origin[2] / ray[2] * cell.camera.cos_to_axis[row, col]
    assert depth[row, col] < table_depth - 0.03
    # T0's cube is red: red dominates green and blue at its pixel
    r, g, b = obs["rgb"][0, row, col].astype(int)
    assert r > g + 40 and r > b + 40


def test_camera_jitter_moves_the_image() -> None:
    a = make_batch("T4", cells=1, seed=5)
    a.reset()
    b = make_batch("T4", cells=1, seed=6)
    b.reset()
    assert not np.allclose(a.cells[0].camera.origin, b.cells[0].camera.origin)


def test_tactile_shows_the_grasp_on_both_pads() -> None:
    batch = make_batch("T0", cells=1, seed=2)
    policy = ScriptedGraspPolicy(batch.config, 1)
    backend = CartesianBackend(batch, batch.config)
    obs, _ = backend.reset()
    assert obs["tactile"].max() < 5.0  # only noise before contact (kPa)
    for _ in range(200):
        obs, *_, info = backend.step(policy.act(obs))
        if info["grasped"][0]:
            break
    assert info["grasped"][0]
    tactile = obs["tactile"][0]
    for pad in range(2):
        assert tactile[pad].max() > 50.0  # kPa: clear contact pressure on each pad
    # pressure integrates back to the measured pad force (taxel area × kPa)
    half = batch.pad_half_size
    area = (2 * half[0] / 8) * (2 * half[2] / 8)
    raw_force = batch.contact.tactile[0].sum() * 1000.0 * area
    assert raw_force == pytest.approx(batch.contact.pad_force_target[0].sum(), rel=0.05)


def test_modality_dropout_and_occlusion_zero_what_they_mask() -> None:
    batch = make_batch("T4", cells=8, seed=4)
    obs, _ = batch.reset()
    masks = []
    for _ in range(40):
        obs, *_ = batch.step(hold_action(batch))
        masks.append(obs[MASK_KEY].copy())
        for j, name in enumerate(MODALITIES):
            missing = ~obs[MASK_KEY][:, j]
            assert not np.any(obs[name][missing]), name
    mask = np.stack(masks)
    present = mask.mean(axis=(0, 1))
    for name in ("tactile", "imu", "instruction"):
        assert 0.6 < present[MODALITIES.index(name)] < 0.8  # ~30 % dropout
    # vision also suffers occlusion on top of dropout
    assert present[MODALITIES.index("depth")] < present[MODALITIES.index("tactile")]
    assert present[MODALITIES.index("proprio")] == 1.0 and present[MODALITIES.index("privileged")] == 1.0
    # nothing is dropped on T0
    clean = make_batch("T0", cells=2)
    obs, _ = clean.reset()
    assert obs[MASK_KEY].all()
