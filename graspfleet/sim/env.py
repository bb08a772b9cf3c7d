"""Gymnasium interfaces to the grasp cell: a single-cell ``Env`` and an in-process ``VectorEnv``.

Two ids are registered:

- ``graspfleet/GraspCell-v0``: low-level actions, six joint-position targets (rad), gripper
  width (m), grip-force limit per jaw (N);
- ``graspfleet/GraspCellCartesian-v0``: Cartesian actions through the safe action pipeline, a
  TCP twist (m, rad per control step), width (m), force (N); ``info`` reports
  ``out_of_bounds_proposed``, ``held`` and ``slowdown``.

``gymnasium.make(id, tier="T1")`` gives one cell; ``gymnasium.make_vec(id, num_envs=16,
vectorization_mode="vector_entry_point")`` gives a batch stepped in one process.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from graspfleet.actions.cartesian import CartesianBackend
from graspfleet.interfaces import SimulatorBackend
from graspfleet.sim.batch import GraspCellBatch
from graspfleet.sim.config import CellConfig, TierConfig
from graspfleet.sim.tiers import get_tier
from graspfleet.spec import MASK_KEY, ArraySpec

ENV_ID = "graspfleet/GraspCell-v0"
CARTESIAN_ENV_ID = "graspfleet/GraspCellCartesian-v0"
ActionMode = Literal["joint", "cartesian"]


def _box(spec: ArraySpec) -> spaces.Space[Any]:
    if spec.name == MASK_KEY:
        return spaces.MultiBinary(spec.shape[0])
    return spaces.Box(low=spec.low, high=spec.high, shape=spec.shape, dtype=spec.dtype.type)


def observation_space(spec: dict[str, ArraySpec]) -> spaces.Dict:
    """The Gymnasium ``Dict`` space of one cell's observation."""
    return spaces.Dict({name: _box(s) for name, s in spec.items()})


def _resolve_tier(tier: str | TierConfig) -> TierConfig:
    return get_tier(tier) if isinstance(tier, str) else tier


def _backend(batch: GraspCellBatch, action_mode: ActionMode) -> SimulatorBackend:
    if action_mode == "joint":
        return batch
    if action_mode == "cartesian":
        return CartesianBackend(batch, batch.config)
    raise ValueError(f"action_mode: expected 'joint' or 'cartesian', got {action_mode!r}")


class GraspCellEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """One grasp cell as a Gymnasium environment (no autoreset: call ``reset`` when done)."""

    def __init__(
        self, tier: str | TierConfig = "T0", config: CellConfig | None = None, action_mode: ActionMode = "joint"
    ) -> None:
        self.metadata = {"render_modes": []}
        self.config = config or CellConfig()
        self.batch = GraspCellBatch(self.config, _resolve_tier(tier), num_cells=1, autoreset=False)
        self.backend = _backend(self.batch, action_mode)
        self.observation_space = observation_space(self.batch.spec)
        self.action_space = spaces.Box(self.backend.action_low, self.backend.action_high, dtype=np.float64)
        self._needs_reset = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self.backend.reset(seed=seed)
        self._needs_reset = False
        return {k: v[0] for k, v in obs.items()}, {"instruction": info["instruction"][0]}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self._needs_reset:
            raise RuntimeError("step() called on a finished or never-reset episode: call reset() first")
        arr = np.asarray(action)
        if arr.shape != self.action_space.shape:
            raise ValueError(f"action: expected shape {self.action_space.shape}, got {arr.shape}")
        obs, reward, terminated, truncated, info = self.backend.step(arr[None])
        done = bool(terminated[0] or truncated[0])
        self._needs_reset = done
        one = {k: (v[0] if isinstance(v, np.ndarray) and v.ndim >= 1 else v) for k, v in info.items()}
        return (
            {k: v[0] for k, v in obs.items()},
            float(reward[0]),
            bool(terminated[0]),
            bool(truncated[0]),
            one,
        )


class GraspVectorEnv(VectorEnv[dict[str, np.ndarray], np.ndarray, np.ndarray]):
    """A batch of grasp cells stepped in one process, with same-step autoreset.

    When a cell's episode ends, it restarts within the same ``step``: the returned
    observation is the new episode's first, and ``info["final_observation"]`` (with
    ``info["_final"]``) holds the last one of the finished episode.
    """

    def __init__(
        self,
        num_envs: int = 1,
        tier: str | TierConfig = "T0",
        config: CellConfig | None = None,
        action_mode: ActionMode = "joint",
    ) -> None:
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
        self.config = config or CellConfig()
        self.batch = GraspCellBatch(self.config, _resolve_tier(tier), num_cells=num_envs, autoreset=True)
        self.backend = _backend(self.batch, action_mode)
        self.num_envs = num_envs
        self.single_observation_space = observation_space(self.batch.spec)
        self.single_action_space = spaces.Box(self.backend.action_low, self.backend.action_high, dtype=np.float64)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0] if seed else None
        return self.backend.reset(seed=seed)

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        return self.backend.step(actions)


def register() -> None:
    """Register :data:`ENV_ID` and :data:`CARTESIAN_ENV_ID` with Gymnasium (idempotent)."""
    for env_id, mode in ((ENV_ID, "joint"), (CARTESIAN_ENV_ID, "cartesian")):
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="graspfleet.sim.env:GraspCellEnv",
            vector_entry_point="graspfleet.sim.env:GraspVectorEnv",
            kwargs={"action_mode": mode},
        )


register()
