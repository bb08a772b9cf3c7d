"""Run a policy on a batch of grasp cells for a number of episodes and tally the outcomes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from graspfleet.interfaces import SimulatorBackend
from graspfleet.sim.batch import OUTCOMES


class BatchPolicy(Protocol):
    """Maps a batched observation to batched low-level actions; restarts per cell."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...

    def reset(self, which: np.ndarray) -> None: ...


@dataclasses.dataclass
class RunSummary:
    """Counts and rates of a finished run."""

    episodes: int = 0
    control_steps: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    fell: int = 0
    holds: int = 0
    """Control steps where the safe-action cache held the previous command."""
    out_of_bounds_proposed: int = 0
    """Control steps where the policy (or its raw IK proposal) exceeded a bound."""
    returns: list[float] = dataclasses.field(default_factory=list)
    lengths: list[int] = dataclasses.field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.control_steps / self.seconds if self.seconds > 0 else 0.0

    def rate(self, outcome: str) -> float:
        """Fraction of finished episodes with ``outcome``."""
        return self.outcomes[outcome] / self.episodes if self.episodes else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "episodes": self.episodes,
            "control_steps": self.control_steps,
            "seconds": round(self.seconds, 3),
            "control_steps_per_s": round(self.steps_per_second, 1),
            **{f"{name}_count": count for name, count in self.outcomes.items()},
            **{f"{name}_rate": round(self.rate(name), 4) for name in self.outcomes},
            "fell_count": self.fell,
            "hold_rate": round(self.holds / self.control_steps, 5) if self.control_steps else 0.0,
            "out_of_bounds_proposed_rate": (
                round(self.out_of_bounds_proposed / self.control_steps, 5) if self.control_steps else 0.0
            ),
            "mean_return": round(float(np.mean(self.returns)), 3) if self.returns else 0.0,
            "mean_length": round(float(np.mean(self.lengths)), 2) if self.lengths else 0.0,
        }


def run_episodes(
    backend: SimulatorBackend,
    policy: BatchPolicy,
    episodes: int,
    seed: int | None = None,
    on_step: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Step ``backend`` with ``policy`` until ``episodes`` episodes have finished.

    Cells keep running (autoreset) until the count is reached, so the last few episodes
    finish in whichever cells end first.
    """
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    summary = RunSummary()
    obs, _ = backend.reset(seed=seed)
    policy.reset(np.ones(backend.num_cells, dtype=bool))
    start = time.perf_counter()
    while summary.episodes < episodes:
        obs, _, terminated, truncated, info = backend.step(policy.act(obs))
        summary.control_steps += backend.num_cells
        if "held" in info:
            summary.holds += int(info["held"].sum())
            summary.out_of_bounds_proposed += int(info["out_of_bounds_proposed"].sum())
        done = terminated | truncated
        if done.any():
            for i in np.flatnonzero(done)[: episodes - summary.episodes]:
                summary.episodes += 1
                for name in OUTCOMES:
                    summary.outcomes[name] += int(info[f"outcome_{name}"][i])
                summary.fell += int(info["fell"][i])
                summary.returns.append(float(info["episode_return"][i]))
                summary.lengths.append(int(info["episode_length"][i]))
            policy.reset(done)
        summary.seconds = time.perf_counter() - start
        if on_step is not None:
            on_step(summary)
    return summary
