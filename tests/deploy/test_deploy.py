"""The shipped Ray cluster configs are valid for the cluster launcher."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "deploy").glob("cluster*.yaml"))
SCHEMA = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def test_every_cluster_config_is_shipped() -> None:
    assert {c.name for c in CONFIGS} >= {"cluster.yaml", "cluster-local.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_cluster_config_validates_against_rays_schema(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    jsonschema.validate(config, SCHEMA)
    validate_config(prepare_config(config))  # what `ray up` runs first: defaults filled in, then checked
    assert any("torch==2.13.0" in c for c in config["setup_commands"])
    if "available_node_types" in config:
        nodes = config["available_node_types"]
        assert nodes[config["head_node_type"]]["resources"].get("sim_slot", 0) == 0  # no actors on the head
        workers = [n for name, n in nodes.items() if name != config["head_node_type"]]
        assert workers and all(n["resources"]["sim_slot"] >= 1 for n in workers)  # what actors request
    else:  # on-premise: resources are declared by `ray start`
        assert "sim_slot" not in " ".join(config["head_start_ray_commands"])
        assert '"sim_slot"' in " ".join(config["worker_start_ray_commands"])


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_typo_in_a_cluster_config_is_caught(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    config["idle_timeout_minute"] = 5
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minute"):
        jsonschema.validate(config, SCHEMA)
