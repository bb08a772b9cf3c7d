"""Strict configuration: unknown keys, wrong types and empty ranges are refused by name."""

from __future__ import annotations

import dataclasses

import pytest

from graspfleet.config import (
    ConfigError,
    Range,
    from_mapping,
    load,
    merge_overrides,
    refuse_owned_overrides,
    to_mapping,
)
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


def test_a_number_in_scientific_notation_is_a_number_and_words_are_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # YAML 1.1 reads 1e-4 (no dot in the mantissa) as a string
    path = tmp_path / "cell.yaml"
    path.write_text("reward:\n  slip_weight: 2e-1\n")
    config = load(CellConfig, path, ["reward.force_weight=25E-2", "reward.vibration_weight=-0"])
    assert (config.reward.slip_weight, config.reward.force_weight) == (0.2, 0.25)
    for word in ("ten", "1e", "e5", "1.2.3", "inf", "nan"):
        with pytest.raises(ConfigError, match=r"reward\.slip_weight: expected a number"):
            load(CellConfig, None, [f"reward.slip_weight={word}"])


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
    assert rows["actors.cells"][0] == 8 and rows["actors.cells"][1].startswith("Grasp cells per actor")
    assert rows["replay.capacity"][0] == 200_000 and "oldest are removed first" in rows["replay.capacity"][1]
    assert rows["cell.reward.position_weight"][0] == 0.6  # nested sections expand to dotted keys
    assert "cell" not in rows and "replay" not in rows and "learning" not in rows  # sections are not leaves
    assert all(key.count(".") <= 3 for key in rows)


def test_every_key_of_the_run_sections_has_a_docstring() -> None:
    from graspfleet.config import field_docs
    from orchestrator.config import RUN_SECTIONS, TrainConfig

    for name in RUN_SECTIONS:
        section = type(getattr(TrainConfig(), name))
        undocumented = {f.name for f in dataclasses.fields(section)} - set(field_docs(section))
        assert not undocumented, (section.__name__, undocumented)
    assert {"tier", "seed"} <= set(field_docs(TrainConfig))


def test_a_moved_key_is_refused_with_its_new_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from orchestrator.config import TrainConfig

    with pytest.raises(ConfigError, match=r"config key batch_size has moved: it is learning\.batch_size now"):
        load(TrainConfig, None, ["batch_size=64"])
    with pytest.raises(ConfigError, match=r"config key time_budget has moved: it is budget\.seconds now"):
        from_mapping(TrainConfig, {"time_budget": 60})
    # ``actors`` was the actor count and is a section now: a number there names the new key
    with pytest.raises(ConfigError, match=r"config key actors has moved: it is actors\.count now"):
        load(TrainConfig, None, ["actors=4"])
    old_file = tmp_path / "old.yaml"
    old_file.write_text("cells: 16\nsac:\n  gamma: 0.98\n")
    with pytest.raises(ConfigError, match=r"cells has moved: it is actors\.cells now"):
        load(TrainConfig, old_file)
    # the new paths load, and an unknown key is still unknown (not "moved")
    config = load(TrainConfig, None, ["actors.count=4", "learning.batch_size=64"])
    assert (config.actors.count, config.learning.batch_size) == (4, 64)
    with pytest.raises(ConfigError, match=r"unknown config key learning\.batch"):
        load(TrainConfig, None, ["learning.batch=64"])


def test_section_errors_name_their_section() -> None:
    from orchestrator.config import TrainConfig

    with pytest.raises(ConfigError, match=r"budget: seconds: must be > 0"):
        load(TrainConfig, None, ["budget.seconds=0"])
    with pytest.raises(ConfigError, match=r"operations: prefetch_niceness: must be in \[-20, 19\]"):
        load(TrainConfig, None, ["operations.prefetch_niceness=40"])
    with pytest.raises(ConfigError, match="unknown tier 'T9'"):
        load(TrainConfig, None, ["tier=T9"])


def test_commented_yaml_documents_every_key_and_loads_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from graspfleet.config import commented_yaml, describe
    from orchestrator.config import TrainConfig

    config = load(TrainConfig, None, ["actors.cells=3", "cell.reward.slip_weight=0.2", "budget.seconds=90"])
    text = commented_yaml(config)
    (tmp_path / "run.yaml").write_text(text)
    assert load(TrainConfig, tmp_path / "run.yaml") == config  # what it prints is a config file
    comments: dict[str, str] = {}  # dotted key -> the comment lines right above it
    path: list[tuple[int, str]] = []
    pending: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.removeprefix("# "))
            continue
        if stripped:
            indent = len(line) - len(line.lstrip())
            path = [(i, name) for i, name in path if i < indent]
            name = stripped.split(":", 1)[0]
            comments[".".join([*(n for _, n in path), name])] = " ".join(pending)
            path.append((indent, name))
        pending = []
    for key, _, doc in describe(config):
        assert comments[key] == doc, key  # every key, headed by its docstring (or nothing)
    assert yaml.safe_load(text)["actors"]["cells"] == 3


def test_config_command_prints_the_run_config_its_keys_and_sections(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from orchestrator.cli import app
    from orchestrator.config import TrainConfig

    runner = CliRunner()
    result = runner.invoke(app, ["config", "--keys", "--set", "actors.cells=3"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.split()[:1] == ["actors.cells"])
    assert "3" in line and "Grasp cells per actor" in line
    bad = runner.invoke(app, ["config", "--keys", "--set", "no_such_key=1"])
    assert bad.exit_code != 0 and "no_such_key" in bad.output
    moved = runner.invoke(app, ["config", "--set", "env_steps=10"])
    assert moved.exit_code == 2 and "budget.env_steps" in moved.output
    printed = runner.invoke(app, ["config", "--set", "learning.publish_every=7"])
    assert printed.exit_code == 0
    (tmp_path / "run.yaml").write_text(printed.output)
    assert load(TrainConfig, tmp_path / "run.yaml").learning.publish_every == 7
    section = runner.invoke(app, ["config", "--section", "budget"])
    assert section.exit_code == 0 and section.output.startswith("budget:\n") and "learning" not in section.output
    assert runner.invoke(app, ["config", "--section", "nope"]).exit_code == 2


def test_train_help_documents_the_run_sections_from_their_field_docstrings() -> None:
    from typer.testing import CliRunner

    from graspfleet.config import field_docs
    from orchestrator.cli import app
    from orchestrator.config import LearningConfig

    shown = " ".join(CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).output.split())
    for name, doc in field_docs(LearningConfig).items():
        assert f"learning.{name}" in shown and doc.replace("``", "`")[:40] in shown.replace("``", "`"), name


def test_replace_keys_changes_dotted_keys_and_validates() -> None:
    from graspfleet.config import replace_keys
    from orchestrator.config import TrainConfig

    config = replace_keys(TrainConfig(), {"learning.batch_size": 64, "cell.reward.slip_weight": 0.2, "seed": 3})
    assert (config.learning.batch_size, config.cell.reward.slip_weight, config.seed) == (64, 0.2, 3)
    assert config.actors == TrainConfig().actors  # nothing else changed
    with pytest.raises(ConfigError, match=r"unknown config key learning\.batch"):
        replace_keys(TrainConfig(), {"learning.batch": 64})
    with pytest.raises(ConfigError, match="seed is not a section"):
        replace_keys(TrainConfig(), {"seed.x": 1})
    with pytest.raises(ConfigError, match="learning: batch_size: must be >= 1"):
        replace_keys(TrainConfig(), {"learning.batch_size": 0})


def test_an_override_of_a_key_the_program_sets_itself_is_refused_with_what_to_use_instead() -> None:
    owned = {"learning.updates_per_step": "use --updates-per-step", "seed": "use --seed"}
    refuse_owned_overrides(["learning.batch_size=64", "sac.gamma=0.97"], owned)  # others pass
    with pytest.raises(ConfigError, match=r"--set learning\.updates_per_step: .* itself; use --updates-per-step"):
        refuse_owned_overrides(["sac.gamma=0.97", "learning.updates_per_step=2"], owned)
    with pytest.raises(ConfigError, match=r"--set learning: this program sets learning\.updates_per_step"):
        refuse_owned_overrides(["learning={}"], owned)  # a section that holds one
    with pytest.raises(ConfigError, match=r"--set seed: .*use --seed"):
        refuse_owned_overrides(["seed=3"], owned)
