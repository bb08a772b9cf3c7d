"""Exploration noise matched to each action channel (method.md §3), per cell.

Position channels (the twist and the gripper width) get temporally correlated
Ornstein–Uhlenbeck noise, which moves the end effector smoothly; the force channel gets a
truncated Gaussian (redrawn beyond ``truncation`` σ), which never spikes the grip. Both scale
with the policy's entropy: as the policy grows certain, its exploration noise fades.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from graspfleet.config import require


@dataclasses.dataclass(frozen=True)
class ExplorationConfig:
    ou_theta: float = 0.15
    """Mean reversion of the OU process per control step."""
    position_sigma: tuple[float, ...] = (0.001, 0.001, 0.001, 0.005, 0.005, 0.005, 0.002)
    """OU σ of the twist (m, rad per step) and the gripper width (m). The OU process's stationary
    spread is about twice σ; at 4 mm per step (10 cm/s) a held cube slipped and the actors never
    completed a grasp."""
    force_sigma: float = 0.5
    """σ of the force noise (N): small against T0's ~4 N grip (at 3 N the grip often fell to 0)."""
    truncation: float = 2.0
    """Force noise beyond this many σ is redrawn."""
    entropy_high: float = 0.0
    """Policy entropy (nats) at and above which the noise has full scale …"""
    entropy_low: float = -12.0
    """… and at and below which it has ``min_scale``."""
    min_scale: float = 0.1

    def __post_init__(self) -> None:
        require(0 <= self.ou_theta <= 1, "exploration.ou_theta: must be in [0, 1]")
        require(len(self.position_sigma) == 7, "exploration.position_sigma: needs 7 values (twist + width)")
        require(all(s >= 0 for s in self.position_sigma), "exploration.position_sigma: must be >= 0")
        require(self.force_sigma >= 0, "exploration.force_sigma: must be >= 0")
        require(self.truncation > 0, "exploration.truncation: must be > 0")
        require(self.entropy_low < self.entropy_high, "exploration.entropy_low: must be < entropy_high")
        require(0 <= self.min_scale <= 1, "exploration.min_scale: must be in [0, 1]")


def entropy_scale(entropy: float, config: ExplorationConfig) -> float:
    """Noise scale in [min_scale, 1], linear in the policy entropy between the two bounds."""
    fraction = (entropy - config.entropy_low) / (config.entropy_high - config.entropy_low)
    return float(np.clip(fraction, config.min_scale, 1.0))


class ChannelNoise:
    """OU noise on the 7 position channels and truncated Gaussian noise on force, for N cells."""

    def __init__(self, num_cells: int, config: ExplorationConfig, seed: int | None = None) -> None:
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.state = np.zeros((num_cells, 7))
        self.sigma = np.asarray(config.position_sigma)

    def reset(self, which: np.ndarray) -> None:
        """Restart the OU process of the cells where ``which`` is true."""
        self.state[which] = 0.0

    def sample(self, scale: float) -> np.ndarray:
        """Noise ``(N, 8)`` to add to the policy's actions."""
        cfg = self.config
        self.state += -cfg.ou_theta * self.state + self.sigma * self.rng.standard_normal(self.state.shape)
        force = self.rng.standard_normal(self.state.shape[0])
        outside = np.abs(force) > cfg.truncation
        while outside.any():
            force[outside] = self.rng.standard_normal(int(outside.sum()))
            outside = np.abs(force) > cfg.truncation
        return scale * np.concatenate([self.state, (cfg.force_sigma * force)[:, None]], axis=1)
