"""Evaluation of a published policy: deterministic actions on a tier, success with a confidence interval."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from actors.sim_actor import PolicyCopy
from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.actions.config import ActionConfig
from graspfleet.confidence import wilson_interval
from graspfleet.networks import NetworkConfig
from graspfleet.sim.batch import OUTCOMES, GraspCellBatch
from graspfleet.sim.config import CellConfig, TierConfig


@dataclasses.dataclass
class Evaluation:
    episodes: int
    weights_version: int
    outcomes: dict[str, int]
    """Episodes in which each outcome happened; they overlap (a success may follow a slip)."""
    timeouts: int
    """Episodes that ran out of steps without success, collision or falling."""
    success_rate: float
    interval: tuple[float, float]
    mean_return: float


def evaluate(
    weights: Path | bytes,
    cell: CellConfig,
    tier: TierConfig,
    episodes: int,
    cells: int = 8,
    seed: int = 0,
    network: NetworkConfig | None = None,
    action: ActionConfig | None = None,
) -> Evaluation:
    """Run ``episodes`` episodes of the deterministic policy (no exploration noise) through the pipeline."""
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    policy = PolicyCopy(cell, network or NetworkConfig(), action or ActionConfig())
    policy.load(weights.read_bytes() if isinstance(weights, Path) else weights)
    env = CartesianBackend(GraspCellBatch(cell, tier, cells, seed=seed), cell, action, strict=False)
    obs, _ = env.reset(seed=seed)
    counts = dict.fromkeys(OUTCOMES, 0)
    returns: list[float] = []
    timeouts = 0
    while len(returns) < episodes:
        actions, _ = policy.act(obs, deterministic=True)
        obs, _, terminated, truncated, info = env.step(actions)
        for i in np.flatnonzero(terminated | truncated)[: episodes - len(returns)]:
            returns.append(float(info["episode_return"][i]))
            timeouts += int(truncated[i])
            for name in OUTCOMES:
                counts[name] += int(info[f"outcome_{name}"][i])
    return Evaluation(
        episodes=episodes,
        weights_version=policy.version,
        outcomes=counts,
        timeouts=timeouts,
        success_rate=counts["success"] / episodes,
        interval=wilson_interval(counts["success"], episodes),
        mean_return=float(np.mean(returns)),
    )
