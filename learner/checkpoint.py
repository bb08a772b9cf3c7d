"""Learner checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory holds ``tensors.safetensors`` (every network, the target networks, the
acting (averaged) encoder and policy, the curriculum's frozen KL reference when there is one,
log α, and each Adam moment, under flat names) and ``state.json`` (optimizer hyper-parameters
and step counts, the per-channel learning-rate controller, the curriculum's learning-rate scale
and KL weight, the update counter, the last published weights version, and what the caller adds,
such as the curriculum's state). It is written to a temporary directory and swapped in
atomically, so a crash mid-write keeps the previous one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from learner.sac import SACLearner

_NETWORKS = (
    "encoder",
    "policy",
    "critics",
    "pose_head",
    "target_encoder",
    "target_critics",
    "acting_encoder",
    "acting_policy",
)
_OPTIMIZERS = ("critic_optimizer", "actor_optimizer", "alpha_optimizer")


def save(
    learner: SACLearner, directory: Path, weights_version: int, curriculum: Mapping[str, Any] | None = None
) -> None:
    """Write the learner's full training state under ``directory`` (with the curriculum's state,
    JSON-ready, when given)."""
    tensors: dict[str, torch.Tensor] = {"log_alpha": learner.log_alpha.detach().cpu().reshape(1)}
    for name in _NETWORKS:
        for key, value in getattr(learner, name).state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    optimizers: dict[str, Any] = {}
    for name in _OPTIMIZERS:
        state = getattr(learner, name).state_dict()
        for param_id, fields in state["state"].items():
            for field, value in fields.items():
                tensors[f"{name}.state.{param_id}.{field}"] = torch.as_tensor(value).detach().cpu().reshape(-1).clone()
        optimizers[name] = {
            "param_groups": state["param_groups"],
            "shapes": {
                f"{pid}.{f}": list(torch.as_tensor(v).shape)
                for pid, fs in state["state"].items()
                for f, v in fs.items()
            },
        }
    reference = learner.kl_reference_tensors()
    if reference is not None:
        tensors.update({f"kl_reference.{k}": v for k, v in reference.items()})
    staging = directory.with_name(directory.name + ".writing")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    save_file(tensors, str(staging / "tensors.safetensors"))
    (staging / "state.json").write_text(
        json.dumps(
            {
                "updates": learner.updates,
                "weights_version": weights_version,
                "optimizers": optimizers,
                "channels": learner.channels.state(),
                "lr_scale": learner.lr_scale,
                "kl_weight": learner.kl_weight,
                "curriculum": None if curriculum is None else dict(curriculum),
            }
        )
    )
    previous = directory.with_name(directory.name + ".previous")
    if directory.exists():
        if previous.exists():
            shutil.rmtree(previous)
        directory.rename(previous)
    staging.rename(directory)
    if previous.exists():
        shutil.rmtree(previous)
    fd = os.open(directory.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(directory: Path) -> bool:
    return (directory / "state.json").is_file() and (directory / "tensors.safetensors").is_file()


def saved_curriculum(directory: Path) -> dict[str, Any] | None:
    """The curriculum state saved with the checkpoint (None when there was none)."""
    state = json.loads((directory / "state.json").read_text())
    saved = state.get("curriculum")
    return None if saved is None else dict(saved)


def restore(learner: SACLearner, directory: Path) -> int:
    """Load a checkpoint into ``learner`` (strictly); returns the last published weights version."""
    tensors = load_file(str(directory / "tensors.safetensors"), device=str(learner.device))
    state = json.loads((directory / "state.json").read_text())
    with torch.no_grad():
        learner.log_alpha.copy_(tensors["log_alpha"].reshape(()))
    for name in _NETWORKS:
        prefix = f"{name}."
        try:
            getattr(learner, name).load_state_dict(
                {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            )
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {directory}: its {name} does not fit this learner (was it saved with other "
                f"network or sac.critics settings, or by an older graspfleet?): {error}"
            ) from error
    for name in _OPTIMIZERS:
        saved = state["optimizers"][name]
        restored: dict[str, Any] = {"param_groups": saved["param_groups"], "state": {}}
        for key, shape in saved["shapes"].items():
            param_id, field = key.split(".", 1)
            value = tensors[f"{name}.state.{key}"].reshape(shape)
            restored["state"].setdefault(int(param_id), {})[field] = value
        getattr(learner, name).load_state_dict(restored)
    learner.channels.load_state(state["channels"])
    learner.lr_scale = float(state["lr_scale"])
    reference = {k.removeprefix("kl_reference."): v for k, v in tensors.items() if k.startswith("kl_reference.")}
    learner.set_kl_reference(reference or None, float(state["kl_weight"]))
    learner.updates = int(state["updates"])
    return int(state["weights_version"])
