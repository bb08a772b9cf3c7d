"""Demonstrations from the scripted expert, for the learner's warm start (method.md §3).

The seed warm-starts online RL from data with a behaviour-cloning regularizer (weight 0.1 for
the first ~10k steps) so the policy does not collapse before it has found the reward. Here the
data are episodes of a scripted expert (:func:`~graspfleet.policies.make_expert`), run through the same
cells and the same safe action pipeline as the actors, on the tier being trained; only
successful episodes are kept. The learner holds them in its own small table and mixes a share
of them into every batch (``SACConfig.demo_fraction``); the policy's weights still start from
random initialization.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from actors.trajectory import grasp_signature
from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.actions.config import ActionConfig
from graspfleet.policies import ExpertKind, make_expert
from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig, TierConfig
from graspfleet.sim.tiers import TIER_ORDER
from graspfleet.spec import OBSERVATION_KEYS, observation_spec
from replay.config import ShardConfig
from replay.local import TableSink
from replay.table import ReplayTable

MAX_ATTEMPTS_PER_EPISODE = 3
"""Collection gives up after this many expert episodes per one asked for (a tier the expert cannot do)."""


@dataclasses.dataclass
class Demonstrations:
    """Successful expert episodes in a table of their own."""

    table: ReplayTable
    episodes: int
    env_steps: int
    """Control steps the kept episodes took (what the expert spent, not counting failed attempts)."""
    attempts: int
    """Expert episodes run, successful or not."""


def collect_demonstrations(
    cell: CellConfig,
    tier: TierConfig,
    action: ActionConfig,
    episodes: int,
    cells: int = 8,
    seed: int = 0,
    chunk_length: int = 32,
    expert: ExpertKind = "reactive",
) -> Demonstrations:
    """Run the scripted ``expert`` (:func:`~graspfleet.policies.make_expert`) until ``episodes``
    successful episodes are recorded."""
    if episodes < 1:
        raise ValueError(f"demonstrations: episodes must be >= 1, got {episodes}")
    env = CartesianBackend(GraspCellBatch(cell, tier, cells, seed=seed), cell, action, strict=False)
    policy = make_expert(expert, cell, cells, action)
    obs, _ = env.reset(seed=seed)
    policy.reset(np.ones(cells, dtype=bool))
    running: list[list[dict[str, Any]]] = [[] for _ in range(cells)]
    kept: list[tuple[list[dict[str, Any]], dict[str, np.ndarray]]] = []
    attempts = 0
    while len(kept) < episodes:
        if attempts >= MAX_ATTEMPTS_PER_EPISODE * episodes:
            raise RuntimeError(
                f"demonstrations: the scripted expert succeeded in {len(kept)} of {attempts} episodes on "
                f"{tier.name}; {episodes} were asked for"
            )
        actions = np.clip(policy.act(obs), env.action_low, env.action_high)
        next_obs, reward, terminated, truncated, info = env.step(actions)
        for i in range(cells):
            step = {k: obs[k][i] for k in OBSERVATION_KEYS}
            step.update(
                action=actions[i].astype(np.float32),
                reward=np.float32(reward[i]),
                terminated=bool(terminated[i]),
                truncated=bool(truncated[i]),
                intervention=True,
            )
            running[i].append(step)
        done = terminated | truncated
        for i in map(int, np.flatnonzero(done)):
            attempts += 1
            if info["outcome_success"][i] and len(kept) < episodes:
                final = info["final_observation"]
                kept.append((running[i], {k: final[k][i] for k in OBSERVATION_KEYS}))
            running[i] = []
        if done.any():
            policy.reset(done)
        obs = next_obs
    steps = sum(len(trajectory) for trajectory, _ in kept)
    signature = grasp_signature(observation_spec(cell))
    # one row per step plus each episode's final observation
    table = ReplayTable(signature, ShardConfig(capacity=steps + len(kept), min_size_to_sample=1), seed=seed)
    for n, (trajectory, final) in enumerate(kept):
        sink = TableSink(table, f"demonstrations/{n}", chunk_length)
        sink.tier = TIER_ORDER.index(tier.name) if tier.name in TIER_ORDER else 0
        for step in trajectory:
            sink.append(step)
        sink.end_episode(final)
    return Demonstrations(table=table, episodes=len(kept), env_steps=steps, attempts=attempts)
