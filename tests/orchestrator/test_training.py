"""The serial training loop: every part real, in one process."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from graspfleet.policies import ExpertKind
from graspfleet.weights import deserialize
from orchestrator.artifacts import Progress
from orchestrator.config import demonstration_rows
from orchestrator.serial import train_serial
from replay.config import ShardConfig
from tests.helpers import small_train_config


def test_serial_run_learns_publishes_and_actors_adopt(tmp_path: Path) -> None:
    config = small_train_config(
        actors={"cells": 4, "chunk_length": 32},
        budget={"env_steps": 600},
        learning={"batch_size": 32, "updates_per_step": 1.0, "min_replay": 120, "publish_every": 10},
        replay=ShardConfig(capacity=5_000, min_size_to_sample=1, sampler="prioritized"),
    )
    progress: list[dict[str, float]] = []
    report = train_serial(config, tmp_path / "run", on_progress=progress.append)
    assert report.env_steps >= 600
    assert report.updates >= 100  # learning started after min_replay and kept the update ratio
    # prioritized replay: every update set the priorities of its batch's replay rows
    assert report.replay_priority_updates == report.updates * (32 - demonstration_rows(config))
    assert report.weights_version == report.updates // 10
    assert progress[-1]["actor_weights_version"] >= 2  # actors adopted published versions
    rows = list(csv.DictReader(report.metrics_path.open()))  # type: ignore[union-attr]
    assert len(rows) == len(progress) and all(np.isfinite(float(r["critic_loss"])) for r in rows)
    final = deserialize((tmp_path / "run" / "policy.safetensors").read_bytes())
    assert final.version == report.weights_version
    assert any(k.startswith("policy.") for k in final.tensors) and any(k.startswith("encoder.") for k in final.tensors)


def test_config_refuses_nonsense() -> None:
    import pytest

    from graspfleet.config import ConfigError

    with pytest.raises(ConfigError, match="learning: batch_size: must be >= 1"):
        small_train_config(learning={"batch_size": 0})


def test_wilson_interval() -> None:
    from graspfleet.confidence import wilson_interval

    low, high = wilson_interval(90, 100)
    assert 0.82 < low < 0.84 and 0.94 < high < 0.96  # the textbook 95 % interval of 90/100
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_cli_eval_runs_a_trained_policy(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    config = small_train_config(
        actors={"cells": 2, "chunk_length": 32, "version_check_every": 25},
        budget={"env_steps": 64},
        learning={"batch_size": 8, "min_replay": 16, "publish_every": 50},
        replay=ShardConfig(capacity=2_000, min_size_to_sample=1),
    )
    train_serial(config, tmp_path / "run")
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "run" / "policy.safetensors"),
            "--episodes",
            "4",
            "--cells",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["episodes"] == 4 and sum(data["outcomes"].values()) <= 4 * 4
    # outcomes may overlap; a timeout is an episode that ended by running out of steps
    assert 0 <= data["timeouts"] <= 4 - data["outcomes"]["success"]
    low, high = data["ci95"]
    assert 0.0 <= low <= data["success_rate"] <= high <= 1.0


@pytest.mark.parametrize("expert", ["waypoint", "reactive"])
def test_demonstrations_hold_only_the_experts_successful_episodes(expert: ExpertKind) -> None:
    from actors.demonstrations import collect_demonstrations
    from graspfleet.actions.config import ActionConfig
    from graspfleet.sim.config import CellConfig, OutcomeConfig
    from graspfleet.sim.tiers import get_tier

    demos = collect_demonstrations(CellConfig(), get_tier("T0"), ActionConfig(), episodes=3, cells=2, expert=expert)
    assert demos.episodes == 3 and demos.attempts >= 3
    assert demos.table.size == demos.env_steps + 3  # every expert step, plus each final observation
    stored = {name: column[: demos.table.size] for name, column in demos.table.storage.items()}
    assert int(stored["terminated"].sum()) == 3  # each kept episode ends in its success
    assert stored["reward"].max() > CellConfig().reward.success_bonus
    impossible = CellConfig(outcome=OutcomeConfig(lift_height=0.5))  # the experts lift 0.15–0.2 m
    with pytest.raises(RuntimeError, match="succeeded in 0 of"):
        collect_demonstrations(impossible, get_tier("T0"), ActionConfig(), episodes=1, cells=4, expert=expert)


def test_serial_run_evaluates_on_schedule_and_draws_its_curves(tmp_path: Path) -> None:
    config = small_train_config(
        actors={"cells": 2},
        budget={"env_steps": 300},
        learning={"batch_size": 16, "min_replay": 40, "updates_per_step": 1.0},
        evaluation={"every": 60, "episodes": 2},
        replay=ShardConfig(capacity=2_000, min_size_to_sample=1),
    )
    report = train_serial(config, tmp_path / "run")
    assert report.demonstration_steps > 0
    assert [e["updates"] for e in report.evaluations] == [60 * (i + 1) for i in range(len(report.evaluations))]
    assert report.evaluations and all(0 <= e["ci_low"] <= e["success_rate"] <= e["ci_high"] for e in report.evaluations)
    rows = list(csv.DictReader((tmp_path / "run" / "evaluations.csv").open()))
    assert len(rows) == len(report.evaluations)
    assert (tmp_path / "run" / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    # the kept policy is the first of the best-evaluated ones, and it loads as weights
    best = max(report.evaluations, key=lambda e: e["success_rate"])
    assert report.best_evaluation == best
    assert json.loads((tmp_path / "run" / "best_policy.json").read_text())["updates"] == best["updates"]
    assert deserialize((tmp_path / "run" / "best_policy.safetensors").read_bytes()).version == best["weights_version"]


def test_best_policy_keeps_a_passing_policy_then_the_highest_tier_then_the_highest_success(tmp_path: Path) -> None:
    from orchestrator.artifacts import BestPolicy

    best = BestPolicy(tmp_path, passing=0.8)

    def row(tier: int, success: float, updates: int) -> dict[str, float]:
        return {"tier_index": tier, "success_rate": success, "updates": updates}

    assert best.offer(b"a", row(0, 0.5, 1))
    assert not best.offer(b"b", row(0, 0.4, 2))
    assert not best.offer(b"c", row(0, 0.5, 3))  # a tie keeps the earlier policy
    assert best.offer(b"d", row(1, 0.2, 4))  # below passing, a higher tier beats a lower one
    assert best.offer(b"e", row(0, 0.9, 5))  # a passing policy beats any that does not pass
    assert not best.offer(b"f", row(1, 0.5, 6))
    assert best.offer(b"g", row(1, 0.8, 7))  # passing a higher tier beats any rate on a lower one
    assert not best.offer(b"h", row(0, 1.0, 8))
    assert best.evaluation == row(1, 0.8, 7)
    assert (tmp_path / "best_policy.safetensors").read_bytes() == b"g"
    assert json.loads((tmp_path / "best_policy.json").read_text())["updates"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_policy.json", "best_policy.safetensors"]


def test_progress_success_rate_covers_the_recent_episodes_not_the_whole_run() -> None:
    progress = Progress(None, window=10, start=0.0)
    assert progress.recent_success_rate(0, 0) == 0.0
    assert progress.recent_success_rate(5, 5) == 1.0
    assert progress.recent_success_rate(10, 5) == 0.5
    assert progress.recent_success_rate(10, 5) == 0.5  # no new episodes: unchanged
    assert progress.recent_success_rate(20, 5) == 0.0  # the first ten episodes left the window
    assert progress.recent_success_rate(24, 9) == pytest.approx(4 / 14)  # a report never splits


def test_demonstrations_follow_the_tier_the_actors_are_on() -> None:
    import torch

    from orchestrator.learning import DemonstrationBatches

    demos = DemonstrationBatches(small_train_config(), torch.device("cpu"))
    assert demos.table is not None and demos.tier == "T0"
    assert demos.table.tier_count[0] > 0 and demos.table.tier_count[1] == 0
    steps = demos.steps
    demos.switch_tier("T0")  # no change: nothing collected
    assert demos.steps == steps
    demos.switch_tier("T1")
    assert demos.tier == "T1" and demos.steps > steps
    assert demos.table.tier_count[0] == 0 and demos.table.tier_count[1] > 0  # T1 episodes replaced T0's
    batch = demos.sample()
    assert batch is not None and len(batch.reward) == demos.size
