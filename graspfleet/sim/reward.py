"""Reward terms of the grasp cell as pure, batched functions (method.md §3, §4).

Every function takes arrays with a leading batch axis (one entry per cell) and returns
arrays of the same leading shape. Nothing here touches MuJoCo.
"""

from __future__ import annotations

import math

import numpy as np

from graspfleet.sim.config import RewardConfig

GRAVITY = 9.81
"""m/s²"""


def position_reward(distance: np.ndarray, lift: np.ndarray, reach_scale: float, lift_height: float) -> np.ndarray:
    """r_pos ∈ [0, 1]: half reach (``1 − tanh(d / reach_scale)``, d the TCP-to-target distance
    in metres) and half lift progress (target height gained over ``lift_height``, clipped)."""
    reach = 1.0 - np.tanh(np.asarray(distance) / reach_scale)
    progress = np.clip(np.asarray(lift) / lift_height, 0.0, 1.0)
    return 0.5 * (reach + progress)


def holding_force(mass: np.ndarray, friction: np.ndarray) -> np.ndarray:
    """Total pad normal force (N) at which friction alone carries the object's weight."""
    return np.asarray(mass) * GRAVITY / np.maximum(np.asarray(friction), 1e-6)


def force_reward(grip_force: np.ndarray, hold_force: np.ndarray, max_safe_force: float, safety: float) -> np.ndarray:
    """r_force ∈ [0, 1] on the total pad normal force on the target (N).

    1 inside ``[safety·hold_force, max_safe_force]``; rising linearly from 0 N up to the
    band; falling linearly to 0 at twice ``max_safe_force`` above it.
    """
    force = np.asarray(grip_force, dtype=np.float64)
    low = np.minimum(safety * np.asarray(hold_force), max_safe_force)
    below = np.clip(force / np.maximum(low, 1e-6), 0.0, 1.0)
    above = np.clip(1.0 - (force - max_safe_force) / max_safe_force, 0.0, 1.0)
    return np.where(force < low, below, np.where(force > max_safe_force, above, 1.0))


def slip_reward(slip_speed: np.ndarray, grasped: np.ndarray, speed_scale: float) -> np.ndarray:
    """r_slip ∈ [0, 1]: ``exp(−v / speed_scale)`` of the object's speed relative to the gripper
    (m/s) while grasped, 0 when not grasped."""
    return np.where(np.asarray(grasped), np.exp(-np.asarray(slip_speed) / speed_scale), 0.0)


def composite_task_reward(
    r_pos: np.ndarray, r_force: np.ndarray, r_slip: np.ndarray, config: RewardConfig
) -> np.ndarray:
    """``0.6·r_pos + 0.3·r_force + 0.1·r_slip`` with the configured weights."""
    return config.position_weight * r_pos + config.force_weight * r_force + config.slip_weight * r_slip


def manipulability_margin(sigma_min: np.ndarray, sigma_ref: float) -> np.ndarray:
    """s ∈ [0, 1]: the Jacobian's smallest singular value over ``sigma_ref``, clipped."""
    return np.clip(np.asarray(sigma_min) / sigma_ref, 0.0, 1.0)


def joint_limit_barrier(distance: np.ndarray, margin: float, floor: float) -> np.ndarray:
    """B(d) = −log(clip(d, floor, margin) / margin) ≥ 0 for d the distance (rad) to the
    nearest joint limit.

    The seed writes this term as ``−5·log(δ − d_bound)``; read literally it is undefined for
    d_bound ≥ δ. graspfleet uses the log barrier it describes: zero farther than δ
    (``margin``) from every limit, growing as the arm nears one, and finite at the bound
    itself because distances below ``floor`` count as ``floor`` (B ≤ log(margin/floor)).
    """
    d = np.clip(np.asarray(distance, dtype=np.float64), floor, margin)
    return -np.log(d / margin)


def smallest_singular_values(jacobians: np.ndarray) -> np.ndarray:
    """σ_min of each matrix in a batch ``(N, 6, 6)``."""
    return np.linalg.svd(jacobians, compute_uv=False)[:, -1]


def one_pole_alpha(cutoff_hz: float, dt: float) -> float:
    """Smoothing factor of a discrete one-pole low-pass with cut-off ``cutoff_hz`` at step ``dt``."""
    rc = 1.0 / (2.0 * math.pi * cutoff_hz)
    return dt / (rc + dt)


class VibrationFilter:
    """Vibration level from the wrist accelerometer, cleaned as method.md §4 prescribes.

    Per physics sample ``a_k`` (m/s², per cell):

    1. a slow one-pole mean ``m_k`` (cut-off ``vibration_baseline_hz``) removes gravity and
       arm motion; the raw vibration is ``x_k = ‖a_k − m_k‖``;
    2. outlier reject: once ``warmup`` samples have been seen, an ``x_k`` further than
       ``outlier_sigma``·max(σ, ``vibration_sigma_floor``) from the running mean is replaced
       by that mean and counted;
    3. a one-pole low-pass (cut-off ``vibration_cutoff_hz``) of the cleaned ``x`` is the level.

    The running mean and variance of ``x`` are updated once per control step from the
    samples it accepted (a cumulative average during warm-up, then an exponential average
    at the baseline rate), so the T samples of a step are tested against the statistics of
    the steps before it. Both one-pole filters are applied to all T samples at once with
    precomputed weights. State is kept per cell; :meth:`reset` clears the cells of a mask.
    """

    def __init__(
        self,
        num_cells: int,
        samples_per_step: int,
        config: RewardConfig,
        dt: float,
        warmup: int = 10,
    ) -> None:
        self.baseline_alpha = one_pole_alpha(config.vibration_baseline_hz, dt)
        self.level_alpha = one_pole_alpha(config.vibration_cutoff_hz, dt)
        self.outlier_sigma = config.outlier_sigma
        self.sigma_floor = config.vibration_sigma_floor
        self.warmup = warmup
        t = samples_per_step
        k = np.arange(t)
        lag = k[:, None] - k[None, :]
        a = self.baseline_alpha
        self._baseline_weights = np.where(lag >= 0, a * (1 - a) ** np.maximum(lag, 0), 0.0)
        self._baseline_decay = (1 - a) ** (k + 1)
        g = self.level_alpha
        self._level_weights = g * (1 - g) ** (t - 1 - k)
        self._level_decay = (1 - g) ** t
        self.baseline = np.zeros((num_cells, 3))
        self.mean = np.zeros(num_cells)
        self.var = np.zeros(num_cells)
        self.level = np.zeros(num_cells)
        self.count = np.zeros(num_cells, dtype=np.int64)
        self.rejected = np.zeros(num_cells, dtype=np.int64)

    def reset(self, mask: np.ndarray) -> None:
        """Forget the history of the cells where ``mask`` is true."""
        self.mean[mask] = 0.0
        self.var[mask] = 0.0
        self.level[mask] = 0.0
        self.count[mask] = 0
        self.rejected[mask] = 0

    def update(self, accel: np.ndarray) -> np.ndarray:
        """Feed ``accel`` of shape ``(N, T, 3)`` (one control step); returns the level ``(N,)``."""
        fresh = self.count == 0
        self.baseline[fresh] = accel[fresh, 0]
        baseline = self._baseline_decay[None, :, None] * self.baseline[:, None, :] + np.einsum(
            "kj,njc->nkc", self._baseline_weights, accel
        )
        self.baseline = baseline[:, -1]
        x = np.linalg.norm(accel - baseline, axis=2)
        sigma = np.maximum(np.sqrt(self.var), self.sigma_floor)
        armed = (self.count >= self.warmup)[:, None]
        outlier = armed & (np.abs(x - self.mean[:, None]) > self.outlier_sigma * sigma[:, None])
        cleaned = np.where(outlier, self.mean[:, None], x)
        accepted = (~outlier).sum(axis=1)
        safe = np.maximum(accepted, 1)
        block_mean = np.where(~outlier, x, 0.0).sum(axis=1) / safe
        block_var = np.where(~outlier, (x - block_mean[:, None]) ** 2, 0.0).sum(axis=1) / safe
        weight = np.where(
            self.count < self.warmup,
            accepted / np.maximum(self.count + accepted, 1),
            1.0 - (1.0 - self.baseline_alpha) ** accepted,
        )
        shift = block_mean - self.mean
        self.var = (1 - weight) * self.var + weight * block_var + weight * (1 - weight) * shift**2
        self.mean = self.mean + weight * shift
        self.level = self._level_decay * self.level + cleaned @ self._level_weights
        self.count += x.shape[1]
        self.rejected += outlier.sum(axis=1)
        return self.level.copy()
