"""One loop, two backends: the same short training config run serially and distributed leaves the
same artifacts (files, CSV columns, checkpoints, best policy, curriculum files); the fields one
backend used to ignore (``evaluate_every``, ``checkpoint_every``) mean the same in both."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from graspfleet.config import ConfigError
from graspfleet.weights import deserialize
from learner import checkpoint
from learner.curriculum import CurriculumConfig
from orchestrator.config import TrainConfig
from orchestrator.distributed import train_distributed
from orchestrator.loop import TrainReport
from orchestrator.redis_server import RedisServer
from orchestrator.serial import SerialBackend, train_serial
from tests.helpers import small_train_config

ARTIFACTS = (
    "metrics.csv",
    "evaluations.csv",
    "policy.safetensors",
    "best_policy.safetensors",
    "best_policy.json",
    "curriculum.csv",
    "training_curves.png",
    "tiers.png",
)
"""Files every run of the shared config leaves, in either backend (``curriculum_events.jsonl``
appears with the first promotion or rollback, which so short a run does not reach)."""
DISTRIBUTED_ONLY = {"control_plane.json", "replay", "replay-signature.json"}
"""Where the distributed run's control plane is, and its shards' checkpoints and signature."""


def shared_config() -> TrainConfig:
    return small_train_config(
        actors={"cells": 2},
        budget={"env_steps": 500},
        learning={"min_replay": 60, "checkpoint_every": 10},
        evaluation={"every": 20, "episodes": 2},
        curriculum=CurriculumConfig(validate_every=20, validation_episodes=2),
    )


def header(path: Path) -> list[str]:
    with path.open() as handle:
        return next(csv.reader(handle))


def check_run(run_dir: Path, report: TrainReport) -> None:
    """What either backend's run must have left."""
    for name in ARTIFACTS:
        assert (run_dir / name).is_file(), name
    assert checkpoint.exists(run_dir / "learner")
    assert report.updates >= 20 and report.evaluations  # it learned and evaluated
    assert [row["updates"] for row in report.evaluations] == [20 * (i + 1) for i in range(len(report.evaluations))]
    best = json.loads((run_dir / "best_policy.json").read_text())
    assert deserialize((run_dir / "best_policy.safetensors").read_bytes()).version == best["weights_version"]
    assert deserialize((run_dir / "policy.safetensors").read_bytes()).version == report.weights_version


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, TrainReport]]:
    root = tmp_path_factory.mktemp("backends")
    config = shared_config()
    serial = train_serial(config, root / "serial")
    with RedisServer() as redis:
        distributed = train_distributed(config, root / "distributed", shards=1, redis_url=redis.url)
    return {"serial": (root / "serial", serial), "distributed": (root / "distributed", distributed)}


@pytest.mark.parametrize("backend", ["serial", "distributed"])
def test_each_backend_leaves_the_runs_artifacts(runs: dict[str, tuple[Path, TrainReport]], backend: str) -> None:
    check_run(*runs[backend])


def test_both_backends_write_the_same_files_and_columns(runs: dict[str, tuple[Path, TrainReport]]) -> None:
    (serial, _), (distributed, _) = runs["serial"], runs["distributed"]
    for name in ("metrics.csv", "evaluations.csv", "curriculum.csv"):
        assert header(serial / name) == header(distributed / name), name
    assert json.loads((serial / "best_policy.json").read_text()).keys() == (
        json.loads((distributed / "best_policy.json").read_text()).keys()
    )
    assert sorted(p.name for p in (serial / "learner").iterdir()) == sorted(
        p.name for p in (distributed / "learner").iterdir()
    )
    files = [{p.name for p in d.iterdir()} for d in (serial, distributed)]
    assert files[1] - files[0] == DISTRIBUTED_ONLY and files[0] <= files[1]
    history = [list(csv.DictReader((d / "curriculum.csv").open())) for d in (serial, distributed)]
    assert history[0][0]["event"] == history[1][0]["event"] == "start"  # before learning could differ


@pytest.mark.parametrize(("field", "value"), [("actor_resource", "sim_slot"), ("prefetch_niceness", 15)])
def test_a_serial_run_refuses_what_only_ray_actors_have(field: str, value: object) -> None:
    config = small_train_config(operations={field: value})
    with pytest.raises(ConfigError, match=f"operations.{field}: applies to the Ray actors"):
        SerialBackend(config)
