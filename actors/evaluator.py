"""What an evaluation actor process runs: validations of published weights for the curriculum.

Made remote by :func:`graspfleet.distributed.train_distributed`; it reads weights versions from
the control plane (safetensors, never pickle) and runs the deterministic policy on a tier with
no exploration noise, away from the learner's process and the training actors.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from graspfleet.config import from_mapping
from graspfleet.control_plane import ControlPlane
from graspfleet.training import TrainConfig, validate


class EvaluationWorker:
    """Validates weights versions on request."""

    def __init__(self, config: dict[str, Any], redis_url: str, run: str) -> None:
        self.train = from_mapping(TrainConfig, config)
        torch.set_num_threads(1)
        self.plane = ControlPlane(redis_url, run)

    def validate(self, version: int, tier: str, generation: int) -> dict[str, Any]:
        """Validate weights ``version`` on ``tier``: :class:`learner.curriculum.ValidationResult` fields."""
        fetched = self.plane.fetch_weights(version)
        if fetched is None:
            raise LookupError(f"validation: weights version {version} is not in the control plane")
        return dataclasses.asdict(validate(self.train, fetched[1], tier, generation, version))

    def close(self) -> None:
        self.plane.close()
