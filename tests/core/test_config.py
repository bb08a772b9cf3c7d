"""Strict configuration: unknown keys, wrong types and empty ranges are refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from graspfleet.config import ConfigError, Range, from_mapping, load, merge_overrides, to_mapping
from graspfleet.sim.config import CellConfig, RewardConfig, TierConfig
from graspfleet.sim.tiers import TIERS
from orchestrator.cli import resolve_config


def test_seed_numbers_are_the_named_defaults() -> None:
    reward = RewardConfig()
    assert (reward.position_weight, reward.force_weight, reward.slip_weight) == (0.6, 0.3, 0.1)
    assert reward.manipulability_weight == 10.0
    assert reward.joint_limit_barrier_weight == 5.0
    assert reward.manipulability_sigma_ref == 0.08
    assert reward.outlier_sigma == 3.0
    assert TIERS["T4"].modality_dropout == pytest.approx(0.3)


def test_range_refuses_empty_and_non_finite() -> None:
    assert Range(1.0, 1.0).width == 0.0
    with pytest.raises(ConfigError, match="empty range"):
        Range(2.0, 1.0)
    with pytest.raises(ConfigError, match="finite"):
        Range(0.0, float("inf"))


def test_unknown_key_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key physics\.substeps"):
        from_mapping(CellConfig, {"physics": {"substeps": 3}})


def test_wrong_type_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"physics\.control_substeps: expected an integer"):
        from_mapping(CellConfig, {"physics": {"control_substeps": "ten"}})
    with pytest.raises(ConfigError, match=r"outcome\.terminate_on_collision: expected true/false"):
        from_mapping(CellConfig, {"outcome": {"terminate_on_collision": 1}})


def test_validation_errors_carry_the_section_path() -> None:
    with pytest.raises(ConfigError, match=r"physics: control_substeps: must be >= 1"):
        from_mapping(CellConfig, {"physics": {"control_substeps": 0}})


def test_round_trip_through_plain_data() -> None:
    tier = TIERS["T3"]
    assert from_mapping(TierConfig, to_mapping(tier)) == tier
    assert from_mapping(CellConfig, to_mapping(CellConfig())) == CellConfig()


def test_overrides_and_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cell.yaml"
    path.write_text("physics:\n  control_substeps: 8\nreward:\n  slip_weight: 0.2\n")
    config = load(CellConfig, path, ["reward.force_weight=0.25"])
    assert config.physics.control_substeps == 8
    assert config.reward.slip_weight == 0.2
    assert config.reward.force_weight == 0.25
    with pytest.raises(ConfigError, match="not of the form"):
        merge_overrides({}, ["nonsense"])


def test_cli_resolution_names_bad_tier_ranges(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cell, tier = resolve_config("T1", None, ["tier.modality_dropout=0.25", "cell.physics.control_substeps=12"])
    assert tier.modality_dropout == 0.25 and tier.name == "T1"
    assert cell.physics.control_substeps == 12
    with pytest.raises(ConfigError, match=r"tier\.randomization.*object_friction.*empty range"):
        resolve_config("T0", None, ["tier.randomization.object_friction=[1.5,0.5]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("cells: {}\n")
    with pytest.raises(ConfigError, match="unknown section 'cells'"):
        resolve_config("T0", bad, None)


def test_tier_refuses_unknown_shape_and_too_few_distinct_targets() -> None:
    with pytest.raises(ConfigError, match="unknown shape 'pyramid'"):
        dataclasses.replace(TIERS["T0"], shapes=("pyramid",))
    with pytest.raises(ConfigError, match="distinct"):
        dataclasses.replace(TIERS["T0"], num_objects=3)


def test_describe_lists_every_leaf_key_with_its_docstring() -> None:
    from graspfleet.config import describe
    from orchestrator.config import TrainConfig

    rows = {key: (value, doc) for key, value, doc in describe(TrainConfig())}
    assert rows["cells"] == (8, "Grasp cells per actor.")
    assert rows["replay.capacity"][0] == 200_000 and "oldest are removed first" in rows["replay.capacity"][1]
    assert rows["cell.reward.position_weight"][0] == 0.6  # nested sections expand to dotted keys
    assert "cell" not in rows and "replay" not in rows  # sections are not leaves
    assert all(key.count(".") <= 3 for key in rows)


def test_config_keys_prints_the_training_config_with_overrides() -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    result = CliRunner().invoke(app, ["config", "--keys", "--set", "cells=3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.split()[:1] == ["cells"])
    assert "3" in line and "Grasp cells per actor." in line
    bad = CliRunner().invoke(app, ["config", "--keys", "--set", "no_such_key=1"])
    assert bad.exit_code != 0 and "no_such_key" in bad.output
