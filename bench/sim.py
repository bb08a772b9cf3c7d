"""Grasp-cell throughput against bare MuJoCo physics, measured in the same run.

1. Record: the scripted grasp policy drives a batch of cells for ``--steps`` control steps;
   its actions and the episode boundaries are recorded (untimed).
2. Full: a fresh batch with the same seed replays the actions through
   ``GraspCellBatch.step`` (validation, backlash, physics, ray-cast RGB-D, tactile, IMU,
   reward, outcome, autoreset), so every cell follows the recorded trajectories.
3. Raw: a fresh batch with the same seed replays the same actions with bare ``mj_step``
   (control written straight into ``MjData.ctrl``, ``control_substeps`` physics steps per
   control step); cells are reset, untimed, where the full run's episodes ended.

Prints one JSON object as its last line. Run single-threaded: ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import mujoco
import numpy as np

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.policies import ScriptedGraspPolicy
from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig
from graspfleet.sim.tiers import get_tier


def record(config: CellConfig, tier: str, cells: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Joint-level actions ``(steps, cells, 8)`` that the scripted policy's Cartesian commands
    became through the action pipeline, and the done flags ``(steps, cells)``."""
    batch = CartesianBackend(GraspCellBatch(config, get_tier(tier), cells, seed=seed), config)
    policy = ScriptedGraspPolicy(config, cells)
    obs, _ = batch.reset()
    actions = np.zeros((steps, cells, 8))
    done = np.zeros((steps, cells), dtype=bool)
    for k in range(steps):
        obs, _, terminated, truncated, info = batch.step(policy.act(obs))
        actions[k] = info["joint_action"]
        done[k] = terminated | truncated
        policy.reset(done[k])
    return actions, done


def time_full(config: CellConfig, tier: str, actions: np.ndarray, seed: int) -> tuple[float, int]:
    """Seconds spent in ``step`` for the whole replay, and the number of finished episodes."""
    batch = GraspCellBatch(config, get_tier(tier), actions.shape[1], seed=seed)
    batch.reset()
    episodes = 0
    start = time.perf_counter()
    for k in range(actions.shape[0]):
        _, _, terminated, truncated, _ = batch.step(actions[k])
        episodes += int((terminated | truncated).sum())
    return time.perf_counter() - start, episodes


def time_raw(config: CellConfig, tier: str, actions: np.ndarray, done: np.ndarray, seed: int) -> float:
    """Seconds spent in bare physics (``ctrl`` writes and ``mj_step``) for the same replay."""
    batch = GraspCellBatch(config, get_tier(tier), actions.shape[1], seed=seed)
    batch.reset()
    substeps = config.physics.control_substeps
    elapsed = 0.0
    for k in range(actions.shape[0]):
        start = time.perf_counter()
        for i, cell in enumerate(batch.cells):
            model, data, index = cell.model, cell.data, cell.index
            data.ctrl[index.arm_actuators] = actions[k, i, :6]
            data.ctrl[index.finger_actuators] = actions[k, i, 6] / 2.0
            model.actuator_forcerange[index.finger_actuators, 0] = -actions[k, i, 7]
            model.actuator_forcerange[index.finger_actuators, 1] = actions[k, i, 7]
            for _ in range(substeps):
                mujoco.mj_step(model, data)
        elapsed += time.perf_counter() - start
        for ended in map(int, np.flatnonzero(done[k])):
            batch.cells[ended].reset(batch._rngs[ended])
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tier", default="T0")
    parser.add_argument("--cells", type=int, default=16, help="cells in the batch")
    parser.add_argument("--steps", type=int, default=150, help="control steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating full/raw measurements; best kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--substeps", type=int, default=None, help="physics steps per control step (default: the config's, 20)"
    )
    args = parser.parse_args()

    config = CellConfig()
    if args.substeps is not None:
        config = dataclasses.replace(
            config, physics=dataclasses.replace(config.physics, control_substeps=args.substeps)
        )
    actions, done = record(config, args.tier, args.cells, args.steps, args.seed)
    control_steps = args.steps * args.cells
    full_times, raw_times, episodes = [], [], 0
    for _ in range(args.repeats):
        seconds, episodes = time_full(config, args.tier, actions, args.seed)
        full_times.append(seconds)
        raw_times.append(time_raw(config, args.tier, actions, done, args.seed))
    full = control_steps / min(full_times)
    raw = control_steps / min(raw_times)
    cam = config.observation.camera
    result = {
        "benchmark": "sim",
        "tier": args.tier,
        "cells": args.cells,
        "control_steps": control_steps,
        "episodes": episodes,
        "control_substeps": config.physics.control_substeps,
        "timestep_s": config.physics.timestep,
        "image": f"{cam.height}x{cam.width}",
        "control_steps_per_s": round(full, 1),
        "raw_physics_control_steps_per_s": round(raw, 1),
        "ratio": round(full / raw, 3),
        "mujoco": mujoco.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }
    print(
        f"full: {full:,.0f} control steps/s   raw mj_step: {raw:,.0f} control steps/s   "
        f"ratio {full / raw:.2f}   ({args.cells} cells, tier {args.tier}, {episodes} episodes/replay)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
