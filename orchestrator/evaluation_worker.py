"""What an evaluation actor process runs: evaluations and validations of published weights.

Made remote by the distributed backend (:mod:`orchestrator.distributed`); it reads weights
versions from the control plane (safetensors, never pickle) and runs the deterministic policy on a
tier with no exploration noise, away from the learner's process and the training actors.
"""

from __future__ import annotations

from typing import Any

import torch

from graspfleet.config import from_mapping
from orchestrator.config import TrainConfig
from orchestrator.control_plane import ControlPlane
from orchestrator.evaluations import EvaluationRequest, run_evaluation


class EvaluationWorker:
    """Runs :class:`~orchestrator.evaluations.EvaluationRequest`\\ s on request, one at a time."""

    def __init__(self, config: dict[str, Any], redis_url: str, run: str) -> None:
        self.train = from_mapping(TrainConfig, config)
        torch.set_num_threads(1)
        self.plane = ControlPlane(redis_url, run)

    def run(self, request: tuple[Any, ...]) -> dict[str, float]:
        """Run the request (its fields as a tuple) on its weights version; the result's fields."""
        evaluation = EvaluationRequest(*request)
        fetched = self.plane.fetch_weights(evaluation.weights_version)
        if fetched is None:
            raise LookupError(
                f"{evaluation.kind}: weights version {evaluation.weights_version} is not in the control plane"
            )
        return run_evaluation(self.train, fetched[1], evaluation)

    def close(self) -> None:
        self.plane.close()
