"""Gymnasium registration, the vector env's autoreset, the backend interface and the CLI."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import graspfleet.sim.env  # noqa: F401  (registers the environment)
from graspfleet.interfaces import BackendUnavailable, SimulatorBackend, make_backend
from graspfleet.sim.batch import REWARD_COMPONENTS
from graspfleet.sim.config import CellConfig
from graspfleet.sim.env import ENV_ID, GraspVectorEnv
from graspfleet.sim.tiers import get_tier
from orchestrator.cli import app


@pytest.mark.filterwarnings("ignore:.*(symmetric and normalized|infinity).*:UserWarning")
def test_registered_env_passes_gymnasium_checks() -> None:
    env = gym.make(ENV_ID, tier="T1")
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert info["instruction"].startswith("pick up the ")
    obs, reward, _, _, step_info = env.step(env.action_space.sample())
    assert isinstance(reward, float) and set(REWARD_COMPONENTS) <= set(step_info)


def test_single_env_refuses_stepping_a_finished_episode() -> None:
    env = gym.make(ENV_ID).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_make_vec_autoresets_in_the_same_step() -> None:
    envs = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", tier="T0")
    assert isinstance(envs, GraspVectorEnv)
    obs, _ = envs.reset(seed=0)
    assert obs["depth"].shape[0] == 3
    envs.batch.episode_step[:] = envs.batch.config.outcome.max_episode_steps - 1
    action = np.tile(np.concatenate([envs.batch.cells[0].home_qpos, [0.09, 10.0]]), (3, 1))
    obs, _, _, truncated, info = envs.step(action)
    assert truncated.all()
    assert info["_final"].all() and info["final_observation"]["depth"].shape[0] == 3
    assert (envs.batch.episode_step == 0).all()


def test_mujoco_batch_implements_the_backend_role() -> None:
    backend = make_backend("mujoco", CellConfig(), get_tier("T0"), 2, seed=0)
    assert isinstance(backend, SimulatorBackend)
    with pytest.raises(BackendUnavailable, match="isaacgym"):
        make_backend("isaacgym", CellConfig(), get_tier("T0"), 2)
    with pytest.raises(ValueError, match="unknown simulator backend"):
        make_backend("bullet", CellConfig(), get_tier("T0"), 2)


def test_cli_sim_reports_outcomes_as_json() -> None:
    result = CliRunner().invoke(app, ["sim", "--episodes", "4", "--cells", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["episodes"] == 4
    assert summary["success_count"] == 4  # the scripted policy grasps every T0 cube
    assert summary["control_steps_per_s"] > 0


def test_cli_random_policy_and_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "sim",
            "--episodes",
            "2",
            "--cells",
            "2",
            "--policy",
            "random",
            "--json",
            "--set",
            "cell.outcome.max_episode_steps=10",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mean_length"] <= 10
    bad = runner.invoke(app, ["sim", "--set", "tier.colours=[mauve]"])
    assert bad.exit_code == 2 and "unknown colour 'mauve'" in bad.output
    missing = runner.invoke(app, ["sim", "--backend", "isaacgym"])
    assert missing.exit_code == 2 and "isaacgym" in missing.output
    assert runner.invoke(app, ["tiers"]).exit_code == 0
    shown = runner.invoke(app, ["sim", "--print-config", "--tier", "T4"])
    assert shown.exit_code == 0 and "modality_dropout: 0.3" in shown.output


def test_cli_train_config_and_modes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    shown = runner.invoke(app, ["train", "--print-config", "--tier", "T2", "--set", "sac.gamma=0.98"])
    assert shown.exit_code == 0 and "tier: T2" in shown.output and "gamma: 0.98" in shown.output
    bad = runner.invoke(app, ["train", "--serial", "--tier", "T9"])
    assert bad.exit_code == 2 and "unknown tier 'T9'" in bad.output
    run = runner.invoke(
        app,
        [
            "train",
            "--serial",
            "--env-steps",
            "64",
            "--set",
            "actors.cells=2",
            "--set",
            "learning.min_replay=16",
            "--set",
            "learning.batch_size=8",
            "--set",
            "learning.device=cpu",
            "--run-dir",
            str(tmp_path / "r"),
        ],
    )
    assert run.exit_code == 0, run.output
    assert (tmp_path / "r" / "policy.safetensors").is_file()
