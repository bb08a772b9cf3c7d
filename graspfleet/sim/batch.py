"""A vectorized batch of grasp cells stepped in one process.

:class:`GraspCellBatch` is the simulator backend the actors run: it validates low-level
actions, advances every cell one control step, and assembles the batched multimodal
observation, the reward with its named components, and episode outcomes. With
``autoreset`` a finished cell restarts in the same step (its last observation is returned
in ``info["final_observation"]``), so an actor never idles a cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graspfleet.sim import reward as rw
from graspfleet.sim.camera import shade
from graspfleet.sim.cell import GraspCell, RawState
from graspfleet.sim.config import CellConfig, TierConfig
from graspfleet.sim.model import GEOM_OBJECT
from graspfleet.sim.sensing import ContactReadings, Kinematics, derive_kinematics, read_contacts
from graspfleet.spec import ACTION_FIELDS, MASK_KEY, MODALITIES, action_bounds, observation_spec

DROPPABLE = ("depth", "rgb", "tactile", "imu", "instruction")
"""Modalities that occlusion and modality dropout can remove (vision, touch, IMU, language).
Joint encoders (``proprio``) and simulator ground truth (``privileged``) are never dropped."""
_MODALITY_INDEX = {name: i for i, name in enumerate(MODALITIES)}
OUTCOMES = ("success", "collision", "slip", "force_overshoot")
REWARD_COMPONENTS = (
    "r_pos",
    "r_force",
    "r_slip",
    "r_stability",
    "r_manipulability",
    "r_joint_limit",
    "r_success",
    "r_collision",
)


class GraspCellBatch:
    """``num_cells`` grasp cells of one tier, stepped together.

    ``step`` takes actions of shape ``(num_cells, 8)``: six arm joint-position targets (rad),
    gripper width (m) and grip-force limit per jaw (N). Every entry must be finite and
    within :attr:`action_low`/:attr:`action_high`; anything else raises ``ValueError``
    naming the cell and the field, and no cell is advanced.
    """

    def __init__(
        self,
        config: CellConfig,
        tier: TierConfig,
        num_cells: int = 1,
        seed: int | None = None,
        autoreset: bool = True,
    ) -> None:
        if num_cells < 1:
            raise ValueError(f"num_cells: must be >= 1, got {num_cells}")
        self.config = config
        self.tier = tier
        self.num_cells = num_cells
        self.autoreset = autoreset
        self.cells = [GraspCell(config, tier) for _ in range(num_cells)]
        self.spec = observation_spec(config)
        self.action_low, self.action_high = action_bounds(
            self.cells[0].index.joint_low, self.cells[0].index.joint_high, config.gripper
        )
        self.index = self.cells[0].index
        self.raw = RawState(num_cells, config, self.cells[0].model)
        self.vibration = rw.VibrationFilter(
            num_cells, config.physics.control_substeps, config.reward, config.physics.timestep
        )
        self.pad_half_size = self.cells[0].model.geom_size[self.index.pad_geoms[0]].copy()
        n = num_cells
        self.target = np.zeros(n, dtype=np.int64)
        self.obj_mass = np.zeros(n)
        self.obj_friction = np.zeros(n)
        self.episode_step = np.zeros(n, dtype=np.int64)
        self.episode_return = np.zeros(n)
        self.hold_steps = np.zeros(n, dtype=np.int64)
        self.held_off_table = np.zeros(n, dtype=bool)
        self.occluded_steps = np.zeros(n, dtype=np.int64)
        self.outcome = {name: np.zeros(n, dtype=bool) for name in OUTCOMES}
        self.rest_height = np.zeros(n)
        self.noise_scale = np.ones(n)
        self.kinematics: Kinematics
        self.contact: ContactReadings
        self.measured_accel = np.zeros((n, config.physics.control_substeps, 3), dtype=np.float32)
        """The wrist accelerometer as sensed (with noise), before any modality dropout (m/s²)."""
        self._rngs: list[np.random.Generator] = []
        self._noise_rng = np.random.default_rng()
        self.seed(seed)

    # -- seeding and reset --------------------------------------------------------------------

    def seed(self, seed: int | None) -> None:
        """Reseed every cell's episode generator and the sensor-noise generator."""
        children = np.random.SeedSequence(seed).spawn(self.num_cells + 1)
        self._rngs = [np.random.default_rng(s) for s in children[:-1]]
        self._noise_rng = np.random.default_rng(children[-1])

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start a new episode in every cell; ``seed`` makes the episode sequence repeatable."""
        if seed is not None:
            self.seed(seed)
        everything = np.ones(self.num_cells, dtype=bool)
        self._reset_cells(everything)
        for i, cell in enumerate(self.cells):
            cell.cast(self.raw.geom_id[i], self.raw.distance[i])
            cell.read(i, self.raw)
        self.raw.imu[:] = 0.0
        obs = self._observe()
        return obs, {"instruction": [c.scene.instruction for c in self.cells if c.scene is not None]}

    def _reset_cells(self, which: np.ndarray) -> None:
        for i in np.flatnonzero(which):
            cell = self.cells[i]
            scene = cell.reset(self._rngs[i])
            self.rest_height[i] = cell.rest_height
            self.noise_scale[i] = scene.physics.sensor_noise_scale
            self.target[i] = scene.target
            self.obj_mass[i] = scene.physics.object_mass
            self.obj_friction[i] = scene.physics.object_friction
        self.episode_step[which] = 0
        self.episode_return[which] = 0.0
        self.hold_steps[which] = 0
        self.held_off_table[which] = False
        self.occluded_steps[which] = 0
        for flags in self.outcome.values():
            flags[which] = False
        self.vibration.reset(which)

    # -- stepping -----------------------------------------------------------------------------

    def validate_actions(self, actions: np.ndarray) -> np.ndarray:
        """Return ``actions`` as float64 ``(num_cells, 8)`` or raise ValueError saying what is wrong."""
        arr = np.asarray(actions)
        if arr.shape != (self.num_cells, len(ACTION_FIELDS)):
            raise ValueError(
                f"action: expected shape ({self.num_cells}, {len(ACTION_FIELDS)}) "
                f"[{', '.join(ACTION_FIELDS)}], got {arr.shape}"
            )
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"action: expected real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            cell, field = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"action[{cell}].{ACTION_FIELDS[field]} is {arr[cell, field]} (must be finite)")
        outside = (arr < self.action_low) | (arr > self.action_high)
        if outside.any():
            cell, field = (int(v) for v in np.argwhere(outside)[0])
            raise ValueError(
                f"action[{cell}].{ACTION_FIELDS[field]} = {arr[cell, field]:.6g} is outside "
                f"[{self.action_low[field]:.6g}, {self.action_high[field]:.6g}]"
            )
        return arr

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every cell one control step; returns ``obs, reward, terminated, truncated, info``."""
        act = self.validate_actions(actions)
        raw = self.raw
        for i, cell in enumerate(self.cells):
            cell.act(act[i, :6], act[i, 6], act[i, 7], raw.imu[i])
            cell.cast(raw.geom_id[i], raw.distance[i])
            cell.read(i, raw)
        self.episode_step += 1
        obs = self._observe()
        reward, info = self._reward_and_outcome()
        self.episode_return += reward
        out = self.config.outcome
        fell = self.kinematics.target_pose[:, 2] < out.fall_height
        terminated = self.outcome["success"] | fell
        if out.terminate_on_collision:
            terminated |= self.outcome["collision"]
        truncated = ~terminated & (self.episode_step >= out.max_episode_steps)
        done = terminated | truncated
        info["episode_step"] = self.episode_step.copy()
        if done.any():
            info["_final"] = done
            info["episode_return"] = np.where(done, self.episode_return, 0.0)
            info["episode_length"] = np.where(done, self.episode_step, 0)
            for name, flags in self.outcome.items():
                info[f"outcome_{name}"] = done & flags
            info["fell"] = done & fell
            if self.autoreset:
                info["final_observation"] = {k: v.copy() for k, v in obs.items()}
                self._reset_cells(done)
                for row in np.flatnonzero(done):
                    self.cells[row].cast(raw.geom_id[row], raw.distance[row])
                    self.cells[row].read(int(row), raw)
                raw.imu[done] = 0.0
                fresh = self._observe(rows=done)
                for key, value in fresh.items():
                    obs[key][done] = value[done]
        return obs, reward, terminated, truncated, info

    # -- observation ----------------------------------------------------------------------------

    def _observe(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Derive measurements from the copied state and assemble the batched observation.

        All rows are computed; ``rows`` marks the cells that start an episode, whose
        occlusion state restarts."""
        cfg = self.config.observation
        noise = cfg.noise
        raw = self.raw
        rng = self._noise_rng
        n = self.num_cells
        cam = cfg.camera
        scale = self.noise_scale.astype(np.float32)
        kin = derive_kinematics(raw, self.index, self.target)
        self.kinematics = kin
        self.contact = read_contacts(
            raw.contacts,
            self.index.geom_role,
            GEOM_OBJECT + self.target,
            raw.pad_pos,
            raw.pad_rot,
            self.pad_half_size,
            cfg.tactile_rows,
            cfg.tactile_cols,
        )
        geom_id = raw.geom_id.reshape(n, cam.height, cam.width)
        distance = raw.distance.reshape(n, cam.height, cam.width)
        camera = self.cells[0].camera
        colour_tables = np.stack([c.colour_table for c in self.cells])
        light = np.stack([c.light_rgb for c in self.cells])
        depth, colour = shade(
            distance,
            geom_id,
            colour_tables,
            light,
            camera.rays_camera,
            camera.cos_to_axis,
            cam.max_depth,
        )

        def gaussian(shape: tuple[int, ...], std: float) -> np.ndarray:
            draw = rng.standard_normal(shape, dtype=np.float32)
            return draw * (std * scale).reshape(n, *([1] * (len(shape) - 1)))

        depth += gaussian(depth.shape, noise.depth)
        np.clip(depth, 0.0, cam.max_depth, out=depth)
        colour *= 255.0
        colour += gaussian(colour.shape, noise.rgb)
        tactile = self.contact.tactile.astype(np.float32) + gaussian(self.contact.tactile.shape, noise.tactile)
        np.maximum(tactile, 0.0, out=tactile)
        imu = raw.imu.astype(np.float32)
        imu[:, :, :3] += gaussian(imu[:, :, :3].shape, noise.imu_accel)
        imu[:, :, 3:] += gaussian(imu[:, :, 3:].shape, noise.imu_gyro)
        self.measured_accel = imu[:, :, :3].copy()
        proprio = np.empty((n, 14), dtype=np.float32)
        proprio[:, :6] = kin.joint_pos + gaussian((n, 6), noise.joint_position)
        proprio[:, 6:12] = kin.joint_vel + gaussian((n, 6), noise.joint_velocity)
        proprio[:, 12] = kin.gripper_width
        proprio[:, 13] = kin.grip_force
        privileged = np.empty((n, 9), dtype=np.float32)
        privileged[:, :7] = kin.target_pose
        privileged[:, 7] = self.obj_mass
        privileged[:, 8] = self.obj_friction
        obs = {
            "depth": depth,
            "rgb": np.clip(colour, 0, 255).astype(np.uint8),
            "tactile": tactile,
            "imu": imu,
            "proprio": proprio,
            "instruction": np.stack([c.instruction_ids for c in self.cells]),
            "privileged": privileged,
        }
        obs[MASK_KEY] = self._modality_mask(rows)
        for name in DROPPABLE:
            missing = ~obs[MASK_KEY][:, _MODALITY_INDEX[name]]
            if missing.any():
                obs[name][missing] = 0
        return obs

    def _modality_mask(self, rows: np.ndarray | None) -> np.ndarray:
        """Which modalities each cell observes this step; only ``rows`` (all if None) advance
        their occlusion state and draw dropout, the others' entries are left all-present."""
        tier = self.tier
        n = self.num_cells
        rng = self._noise_rng
        sel = np.ones(n, dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
        mask = np.ones((n, len(MODALITIES)), dtype=bool)
        if rows is not None:
            self.occluded_steps[sel] = 0
        if tier.occlusion_start_probability > 0:
            starts = sel & (self.occluded_steps == 0) & (rng.random(n) < tier.occlusion_start_probability)
            self.occluded_steps[starts] = tier.occlusion_steps
            occluded = sel & (self.occluded_steps > 0)
            mask[occluded, _MODALITY_INDEX["depth"]] = False
            mask[occluded, _MODALITY_INDEX["rgb"]] = False
            self.occluded_steps[occluded] -= 1
        if tier.modality_dropout > 0:
            columns = [_MODALITY_INDEX[name] for name in DROPPABLE]
            dropped = sel[:, None] & (rng.random((n, len(columns))) < tier.modality_dropout)
            mask[:, columns] &= ~dropped
        return mask

    # -- reward and outcome ---------------------------------------------------------------------

    def _reward_and_outcome(self) -> tuple[np.ndarray, dict[str, Any]]:
        raw = self.raw
        kin = self.kinematics
        contact = self.contact
        rcfg = self.config.reward
        ocfg = self.config.outcome
        obj_pos = kin.target_pose[:, :3]
        distance = np.linalg.norm(raw.tcp_pos - obj_pos, axis=1)
        lift = obj_pos[:, 2] - self.rest_height
        grasped = np.all(contact.pad_force_target > ocfg.grasp_contact_force, axis=1)
        slip_speed = np.linalg.norm(kin.target_vel_at_tcp - kin.tcp_vel, axis=1)
        grip_on_target = contact.pad_force_target.sum(axis=1)

        r_pos = rw.position_reward(distance, lift, rcfg.reach_scale, ocfg.lift_height)
        hold = rw.holding_force(self.obj_mass, self.obj_friction)
        r_force = np.where(
            grip_on_target > 0,
            rw.force_reward(grip_on_target, hold, ocfg.max_safe_grip_force, rcfg.hold_force_safety),
            0.0,
        )
        r_slip = rw.slip_reward(slip_speed, grasped, rcfg.slip_speed_scale)
        vibration = self.vibration.update(self.measured_accel)
        r_stability = -rcfg.vibration_weight * vibration
        sigma_min = rw.smallest_singular_values(raw.jacobian)
        s = rw.manipulability_margin(sigma_min, rcfg.manipulability_sigma_ref)
        barrier = rw.joint_limit_barrier(kin.joint_limit_distance, rcfg.joint_limit_margin, rcfg.joint_limit_floor)

        # Outcome bookkeeping.
        lifted = lift >= ocfg.lift_height
        slipping = grasped & (slip_speed > ocfg.slip_speed)
        lost = self.held_off_table & (~grasped | slipping)
        self.outcome["slip"] |= lost
        steady = lifted & grasped & ~slipping
        self.hold_steps = np.where(steady, self.hold_steps + 1, 0)
        self.held_off_table = grasped & (lift > ocfg.slip_clearance)
        success = self.hold_steps >= ocfg.hold_steps
        self.outcome["success"] |= success
        collision = (contact.arm_table_force > ocfg.collision_force) | (contact.arm_object_force > ocfg.collision_force)
        self.outcome["collision"] |= collision
        self.outcome["force_overshoot"] |= contact.pad_force_objects > ocfg.max_safe_grip_force

        r_success = rcfg.success_bonus * success
        r_collision = -rcfg.collision_penalty * collision
        r_task = rw.composite_task_reward(r_pos, r_force, r_slip, rcfg) + r_stability + r_success + r_collision
        r_manip = -rcfg.manipulability_weight * (1.0 - s)
        r_limit = -rcfg.joint_limit_barrier_weight * barrier
        reward = r_task + r_manip + r_limit
        info: dict[str, Any] = {
            "r_pos": r_pos,
            "r_force": r_force,
            "r_slip": r_slip,
            "r_stability": r_stability,
            "r_manipulability": r_manip,
            "r_joint_limit": r_limit,
            "r_success": r_success,
            "r_collision": r_collision,
            "r_task": r_task,
            "manipulability": s,
            "sigma_min": sigma_min,
            "vibration": vibration,
            "vibration_rejected": self.vibration.rejected.copy(),
            "grasped": grasped,
            "slip_speed": slip_speed,
            "grip_force_on_target": grip_on_target,
            "lift": lift,
        }
        return reward, info
