"""The learner's side of a run: the learner a config trains, its expert demonstrations, and the
priorities it hands back to prioritized replay."""

from __future__ import annotations

import numpy as np
import torch

from actors.demonstrations import collect_demonstrations
from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.ik_torch import TorchArmKinematics
from graspfleet.sim.tiers import TIER_ORDER, get_tier
from graspfleet.spec import observation_spec
from learner.sac import Batch, SACLearner, batch_from_columns, resolve_device
from orchestrator.config import TrainConfig, demonstration_rows
from replay.config import ShardConfig
from replay.table import ReplayTable


def new_priorities(learner: SACLearner, replay: ShardConfig) -> np.ndarray:
    """Priorities of the last update's replay rows: |TD error| + ``replay.priority_epsilon``."""
    return learner.last_td_errors.cpu().numpy().astype(np.float64) + replay.priority_epsilon


def make_learner(config: TrainConfig, device: str | None = None) -> SACLearner:
    """The learner a run of ``config`` trains (on ``device``, default the config's)."""
    device = config.learning.device if device is None else device
    arm = TorchArmKinematics(config.cell, device=resolve_device(device)) if config.sac.reachability_weight > 0 else None
    return SACLearner(
        observation_spec(config.cell),
        cartesian_action_bounds(config.cell, config.action),
        config.network,
        config.sac,
        device,
        kinematics=None if arm is None else (arm, config.action),
    )


class DemonstrationBatches:
    """The learner's share of expert transitions per batch (none when no demonstrations are loaded),
    from the scripted expert's successful episodes on the tier the actors are on: a tier change
    replaces them (:meth:`switch_tier`), so imitation never pulls towards an easier tier's grasps."""

    def __init__(self, config: TrainConfig, device: torch.device, tier: str | None = None) -> None:
        self.config = config
        self.device = device
        self.steps = 0
        """Control steps of all the expert episodes collected so far, every tier included."""
        self.tier: str | None = None
        self.table: ReplayTable | None = None
        self.size = demonstration_rows(config)
        self.switch_tier(tier or config.tier)

    def switch_tier(self, tier: str) -> None:
        """Collect ``demonstrations`` expert episodes on ``tier`` in place of the current ones."""
        if self.size == 0 or tier == self.tier:
            return
        demos = collect_demonstrations(
            self.config.cell,
            get_tier(tier),
            self.config.action,
            self.config.learning.demonstrations,
            seed=self.config.seed + 10_000 + TIER_ORDER.index(tier),
            chunk_length=self.config.actors.chunk_length,
        )
        self.tier, self.table = tier, demos.table
        self.steps += demos.env_steps

    def sample(self) -> Batch | None:
        if self.table is None or self.size == 0:
            return None
        sample = self.table.sample(self.size, n_step=self.config.sac.n_step)
        return batch_from_columns(sample.columns, self.device)
