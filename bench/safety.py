"""The action safety layer: out-of-bounds rates before and after the pipeline, holds, cost, and
the scripted controller's success per tier.

1. A random Cartesian policy (Gaussian twists whose σ equals the per-step limits) drives a
   batch of T1 cells through the pipeline. Counted per control step: the raw IK proposal
   outside the joint limits (what the policy would have commanded without the layer), any
   out-of-bounds proposal (twist, gripper, joint limit or joint step), the commands that leave
   the pipeline outside the limits (must be 0), and holds. The pipeline's own time is measured
   per cell-step, as a fraction of the control period (the real arm's cycle) and of the
   simulated cell step measured in the same run.
2. The pipeline's kinematics (the TCP pose, five DLS iterations, the TCP pose and Jacobian of
   the command) for batches of ``--widths`` cells, against the same work done cell by cell with
   MuJoCo (``mj_kinematics``/``mj_jacSite``, :func:`solve_ik`) in the same run, and the whole
   pipeline's time for a single arm.
3. The scripted grasp controller runs ``--episodes`` seeded episodes per tier through the
   same pipeline.

Prints one JSON object as its last line. Run single-threaded: ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.actions.config import ActionConfig
from graspfleet.geometry import se3
from graspfleet.policies import RandomCartesianPolicy, ScriptedGraspPolicy
from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import ArmKinematics
from graspfleet.sim.runner import run_episodes
from graspfleet.sim.tiers import TIER_ORDER, get_tier


def random_policy_safety(config: CellConfig, cells: int, steps: int, seed: int) -> dict[str, float]:
    """Out-of-bounds, hold and cost figures of the pipeline under a random policy."""
    batch = GraspCellBatch(config, get_tier("T1"), cells, seed=seed)
    pipeline = CartesianBackend(batch, config, ActionConfig()).pipeline
    policy = RandomCartesianPolicy(config, cells, seed=seed)
    obs, _ = batch.reset(seed=seed)
    joints = obs["proprio"][:, :6].astype(np.float64)
    pipeline.reset(np.ones(cells, dtype=bool), joints)
    counts = {"proposed_outside": 0, "out_of_bounds": 0, "commanded_outside": 0, "held": 0, "speed_limited": 0}
    pipeline_seconds = sim_seconds = 0.0
    for _ in range(steps):
        actions = policy.act(obs)
        start = time.perf_counter()
        decided = pipeline(actions, joints)
        pipeline_seconds += time.perf_counter() - start
        joint_targets = decided.joint_action[:, :6]
        counts["proposed_outside"] += int(decided.proposed_outside_joint_limits.sum())
        counts["out_of_bounds"] += int(decided.out_of_bounds_proposed.sum())
        counts["commanded_outside"] += int(
            np.any((joint_targets < pipeline.low) | (joint_targets > pipeline.high), axis=1).sum()
        )
        counts["held"] += int(decided.held.sum())
        counts["speed_limited"] += int(decided.speed_limited.sum())
        start = time.perf_counter()
        obs, _, terminated, truncated, _ = batch.step(decided.joint_action)
        sim_seconds += time.perf_counter() - start
        joints = obs["proprio"][:, :6].astype(np.float64)
        done = terminated | truncated
        if done.any():
            pipeline.reset(done, joints)
    total = steps * cells
    per_step = pipeline_seconds / total
    return {
        "random_proposed_outside_joint_limits_rate": counts["proposed_outside"] / total,
        "random_out_of_bounds_proposed_rate": counts["out_of_bounds"] / total,
        "commanded_outside_joint_limits_rate": counts["commanded_outside"] / total,
        "random_hold_rate": counts["held"] / total,
        "random_speed_limited_rate": counts["speed_limited"] / total,
        "pipeline_us_per_step": per_step * 1e6,
        "pipeline_cost_fraction_of_control_period": per_step / config.physics.control_period,
        "pipeline_cost_fraction_of_sim_step": pipeline_seconds / sim_seconds,
    }


def _seconds_per_call(work: Callable[[], object], seconds: float) -> float:
    work()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        work()
        calls += 1
    return (time.perf_counter() - start) / calls


def kinematics_versus_mujoco(config: CellConfig, widths: list[int], seconds: float, seed: int) -> dict[str, Any]:
    """µs per cell-step of the pipeline's batched kinematics and of the same work per cell on MuJoCo:
    the TCP pose, the target a twist away, the IK, the pose and Jacobian of its result."""
    pipeline = CartesianBackend(GraspCellBatch(config, get_tier("T0"), 1, seed=seed), config, ActionConfig()).pipeline
    batched = pipeline.kinematics
    per_cell = ArmKinematics(config)
    rng = np.random.default_rng(seed)
    results: dict[str, Any] = {}
    for n in widths:
        q = np.clip(rng.normal([0.0, 0.5, 1.3, 0.0, 1.2, 0.0], 0.3, size=(n, 6)), pipeline.low, pipeline.high)
        twists = rng.normal(size=(n, 6)) * np.r_[[0.01] * 3, [0.1] * 3]

        def batch_work(q: np.ndarray = q, twists: np.ndarray = twists) -> None:
            targets = se3.apply_twist_at_point(twists, batched.tcp_pose(q))
            batched.tcp_pose_and_jacobian(batched.solve(targets, q)[0])

        def mujoco_work(q: np.ndarray = q, twists: np.ndarray = twists) -> None:
            for i in range(len(q)):
                target = se3.apply_twist_at_point(twists[i], per_cell.tcp_pose(q[i]))
                per_cell.tcp_pose_and_jacobian(per_cell.solve(target, q[i])[0])

        batch_us = _seconds_per_call(batch_work, seconds) / n * 1e6
        mujoco_us = _seconds_per_call(mujoco_work, seconds) / n * 1e6
        results[str(n)] = {
            "batched_us_per_cell": round(batch_us, 1),
            "mujoco_per_cell_us_per_cell": round(mujoco_us, 1),
            "speedup": round(mujoco_us / batch_us, 2),
        }
    return results


def scripted_per_tier(config: CellConfig, cells: int, episodes: int, seed: int) -> dict[str, dict[str, float]]:
    """Success, hold and out-of-bounds rates of the scripted controller on every tier."""
    results = {}
    for tier in TIER_ORDER:
        backend = CartesianBackend(GraspCellBatch(config, get_tier(tier), cells, seed=seed), config)
        summary = run_episodes(backend, ScriptedGraspPolicy(config, cells), episodes, seed=seed)
        results[tier] = {
            "success_rate": summary.rate("success"),
            "collision_rate": summary.rate("collision"),
            "slip_rate": summary.rate("slip"),
            "force_overshoot_rate": summary.rate("force_overshoot"),
            "hold_rate": summary.holds / summary.control_steps,
            "out_of_bounds_proposed_rate": summary.out_of_bounds_proposed / summary.control_steps,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100, help="control steps of the random-policy run")
    parser.add_argument("--episodes", type=int, default=200, help="scripted episodes per tier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--widths", default="1,4,16,32", help="batch sizes of the kinematics comparison")
    args = parser.parse_args()
    config = CellConfig()
    safety = random_policy_safety(config, args.cells, args.steps, args.seed)
    one_arm = random_policy_safety(config, 1, args.steps * 4, args.seed)
    kinematics = kinematics_versus_mujoco(config, [int(w) for w in args.widths.split(",")], 1.0, args.seed)
    tiers = scripted_per_tier(config, args.cells, args.episodes, args.seed)
    outside = safety["random_proposed_outside_joint_limits_rate"]
    print(
        f"random policy: raw IK proposals outside the joint limits {outside:.2%}"
        f" of steps, any out-of-bounds proposal {safety['random_out_of_bounds_proposed_rate']:.2%},"
        f" commanded outside the limits {safety['commanded_outside_joint_limits_rate']:.2%},"
        f" holds {safety['random_hold_rate']:.2%}"
    )
    print(
        f"pipeline: {safety['pipeline_us_per_step']:.0f} µs per cell-step = "
        f"{safety['pipeline_cost_fraction_of_control_period']:.2%} of the {config.physics.control_period * 1e3:.0f} ms"
        f" control period ({safety['pipeline_cost_fraction_of_sim_step']:.0%} of the simulated step)"
    )
    print(
        f"pipeline, one arm: {one_arm['pipeline_us_per_step']:.0f} µs per step = "
        f"{one_arm['pipeline_cost_fraction_of_control_period']:.2%} of the control period"
    )
    for width, k in kinematics.items():
        print(
            f"kinematics, {width} cells: {k['batched_us_per_cell']:.0f} µs per cell batched, "
            f"{k['mujoco_per_cell_us_per_cell']:.0f} µs cell by cell on MuJoCo ({k['speedup']:.2f}x)"
        )
    for tier, r in tiers.items():
        print(
            f"scripted {tier}: success {r['success_rate']:.1%}  collision {r['collision_rate']:.1%}  "
            f"slip {r['slip_rate']:.1%}  overshoot {r['force_overshoot_rate']:.1%}  holds {r['hold_rate']:.2%}"
        )
    rounded = {k: round(v, 6) for k, v in safety.items()}
    print(
        json.dumps(
            {
                "benchmark": "safety",
                "cells": args.cells,
                "random_steps": args.steps * args.cells,
                "scripted_episodes_per_tier": args.episodes,
                **rounded,
                "pipeline_us_per_step_one_arm": round(one_arm["pipeline_us_per_step"], 1),
                "pipeline_cost_fraction_of_control_period_one_arm": round(
                    one_arm["pipeline_cost_fraction_of_control_period"], 6
                ),
                "kinematics_by_width": kinematics,
                "scripted": {t: {k: round(v, 4) for k, v in r.items()} for t, r in tiers.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
