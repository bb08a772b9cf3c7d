"""Evaluations of published policies: what the loop asks for and what comes back.

Two kinds, run the same way (the deterministic policy, no exploration noise, on a tier):

- ``evaluation``: every ``evaluate_every`` learner updates, ``evaluate_episodes`` episodes on the
  current tier; a row of ``evaluations.csv``, a candidate for the best policy, and what
  ``target_success`` is checked against;
- ``validation``: the curriculum's, every ``curriculum.validate_every`` updates,
  ``curriculum.validation_episodes`` episodes; it feeds the rollback rule.

The serial backend runs them in the loop's process; the distributed one in an evaluation actor
(:class:`orchestrator.evaluation_worker.EvaluationWorker`), beside the learner.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from actors.evaluation import evaluate
from graspfleet.sim.tiers import TIER_ORDER, get_tier
from learner.curriculum import ValidationResult
from orchestrator.config import TrainConfig

EVALUATION_SEED_OFFSET = 20_000
"""Evaluations run on ``seed + 20,000``: episodes no training actor sees (actors use ``seed + k``)."""
VALIDATION_SEED_OFFSET = 30_000
"""Validations run on ``seed + 30,000 + version``: fresh episodes for each version."""


class EvaluationRequest(NamedTuple):
    """An evaluation the loop asked for, with the run's counts when it asked."""

    kind: Literal["evaluation", "validation"]
    weights_version: int
    tier: str
    generation: int
    """The curriculum's generation (0 without a curriculum)."""
    seconds: float
    env_steps: int
    updates: int


def run_evaluation(config: TrainConfig, blob: bytes, request: EvaluationRequest) -> dict[str, float]:
    """Run ``request`` on the weights ``blob``: episodes, success rate with its 95 % Wilson
    interval, mean return, and the rate of each failure outcome (they overlap) and of timeouts."""
    validation = request.kind == "validation"
    result = evaluate(
        blob,
        config.cell,
        get_tier(request.tier),
        config.curriculum.validation_episodes if validation else config.evaluation.episodes,
        seed=config.seed + (VALIDATION_SEED_OFFSET + request.weights_version if validation else EVALUATION_SEED_OFFSET),
        network=config.network,
        action=config.action,
    )
    return {
        "episodes": result.episodes,
        "success_rate": result.success_rate,
        "ci_low": round(result.interval[0], 4),
        "ci_high": round(result.interval[1], 4),
        "mean_return": round(result.mean_return, 3),
        **{f"{name}_rate": count / result.episodes for name, count in result.outcomes.items() if name != "success"},
        "timeout_rate": result.timeouts / result.episodes,
    }


def evaluation_row(request: EvaluationRequest, result: dict[str, float]) -> dict[str, float]:
    """One row of ``evaluations.csv``."""
    return {
        "tier_index": TIER_ORDER.index(request.tier),
        "seconds": round(request.seconds, 2),
        "env_steps": request.env_steps,
        "updates": request.updates,
        "weights_version": request.weights_version,
        **{key: value for key, value in result.items() if key != "episodes"},
    }


def validation_result(request: EvaluationRequest, result: dict[str, float]) -> ValidationResult:
    """A validation's result, as the curriculum's rollback rule takes it."""
    return ValidationResult(
        request.generation,
        int(result["episodes"]),
        result["success_rate"],
        result["collision_rate"],
        request.weights_version,
    )
