"""The Helm chart, rendered and linted offline (helm-python-sdk: Helm's own library, no binary,
no cluster), with its default values and with an operator's custom ones."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from graspfleet.config import load
from orchestrator.config import TrainConfig

helm = pytest.importorskip("helm_python.chart", reason="helm-python-sdk (a dev dependency) renders the chart")

CHART = Path(__file__).resolve().parents[2] / "helm" / "graspfleet"
DEPLOY = CHART.parents[1] / "deploy"
COMPONENT = "app.kubernetes.io/component"
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())

CUSTOM = {
    "train": {"mode": "cluster", "run": "grasp-t2", "config": {"tier": "T2", "actors": {"count": 40, "cells": 4}}},
    "replay": {"shards": 4},
    "redis": {"existingSecret": "ops-redis", "passwordKey": "password"},
    "ray": {"head": {"gpus": 1}, "simWorkers": {"maxReplicas": 20, "simSlots": 10}},
    "monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values, name="gf", namespace="robots", is_install=True)
    return [
        document
        for path, text in manifests.items()
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]


def one(objects: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


def pod_specs(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for o in objects:
        if o["kind"] == "StatefulSet":
            specs.append(o["spec"]["template"]["spec"])
        elif o["kind"] in ("RayJob", "RayCluster"):
            cluster = o["spec"]["rayClusterSpec"] if o["kind"] == "RayJob" else o["spec"]
            specs.append(cluster["headGroupSpec"]["template"]["spec"])
            specs.extend(g["template"]["spec"] for g in cluster["workerGroupSpecs"])
            if o["kind"] == "RayJob":
                specs.append(o["spec"]["submitterPodTemplate"]["spec"])
    return specs


def test_default_values_render_every_part_with_probes_persistence_and_monitoring() -> None:
    objects = render()
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == [
        "ConfigMap", "PersistentVolumeClaim", "PrometheusRule", "RayJob", "Secret", "Service", "ServiceMonitor",
        "StatefulSet",
    ]  # fmt: skip
    # replay shards: a StatefulSet behind a headless Service, gRPC health probes, a volume each
    shards = one(objects, "StatefulSet", "-replay")
    assert shards["spec"]["replicas"] == 2
    container = shards["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051
    assert "--train-config=/etc/graspfleet/train.yaml" in container["args"] and "--shards=2" in container["args"]
    assert shards["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert one(objects, "Service", "-replay")["spec"]["clusterIP"] == "None"
    # Redis: append-only, its password from the chart's Secret
    redis = one(objects, "StatefulSet", "-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][:2] == ["--appendonly", "yes"] and "$(REDIS_PASSWORD)" in redis["args"]
    assert redis["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "gf-graspfleet-redis", "key": "redis-password"}
    # the learner: a RayJob whose driver uses every shard; an autoscaling worker group of sim_slots
    job = one(objects, "RayJob")
    entrypoint = job["spec"]["entrypoint"]
    assert entrypoint.startswith("graspfleet train --address auto --config /etc/graspfleet/train.yaml")
    assert entrypoint.count("--replay gf-graspfleet-replay-") == 2
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["enableInTreeAutoscaling"] is True
    workers = cluster["workerGroupSpecs"][0]
    assert (workers["minReplicas"], workers["maxReplicas"]) == (0, 8)
    assert json.loads(workers["rayStartParams"]["resources"].strip("'")) == {"sim_slot": 14}
    head_env = {e["name"]: e for e in cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert head_env["GRASPFLEET_REDIS"]["value"] == "redis://:$(REDIS_PASSWORD)@gf-graspfleet-redis:6379/0"
    # monitoring: the alert rules and the dashboard are deploy/'s own
    rules = one(objects, "PrometheusRule")["spec"]
    assert rules == yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    dashboard = one(objects, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["graspfleet.json"])["uid"] == "graspfleet-training"
    monitors = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceMonitor"}
    assert set(monitors) == {"gf-graspfleet-learner", "gf-graspfleet-replay", "gf-graspfleet-sim-worker"}
    for monitor in monitors.values():
        component = monitor["spec"]["selector"]["matchLabels"][COMPONENT]
        labelled = [
            s for s in objects if s["kind"] == "Service" and s["metadata"]["labels"].get(COMPONENT) == component
        ]
        service = labelled[0]
        service_ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= service_ports
        assert all(
            {"targetLabel": "run", "replacement": "grasp-t0"} in e["relabelings"] for e in monitor["spec"]["endpoints"]
        )


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_every_pod_runs_as_non_root_with_resource_requests_and_limits(values: dict[str, Any] | None) -> None:
    for spec in pod_specs(render(values)):
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]


def test_custom_values_shape_the_release() -> None:
    objects = render(CUSTOM)
    kinds = {o["kind"] for o in objects}
    assert "RayCluster" in kinds and "RayJob" not in kinds
    assert not {"ServiceMonitor", "PrometheusRule", "Secret"} & kinds  # the operator's own Secret is used
    assert one(objects, "StatefulSet", "-replay")["spec"]["replicas"] == 4
    cluster = one(objects, "RayCluster")
    assert cluster["metadata"]["annotations"]["graspfleet/entrypoint"].count("--replay ") == 4
    workers = cluster["spec"]["workerGroupSpecs"][0]
    assert workers["maxReplicas"] == 20 and json.loads(workers["rayStartParams"]["resources"].strip("'")) == {
        "sim_slot": 10
    }
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert head["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "ops-redis", "key": "password"}
    # the run name labels every series, and the training config is one graspfleet accepts
    train = yaml.safe_load(one(objects, "ConfigMap", "-train")["data"]["train.yaml"])
    assert train == {**DEFAULTS["train"]["config"], **CUSTOM["train"]["config"]}  # Helm merges maps


def test_the_training_config_in_values_is_a_valid_graspfleet_config(tmp_path: Path) -> None:
    for values in (None, CUSTOM):
        text = one(render(values), "ConfigMap", "-train")["data"]["train.yaml"]
        (tmp_path / "train.yaml").write_text(text)
        config = load(TrainConfig, tmp_path / "train.yaml")
        expected = (values or DEFAULTS)["train"]["config"]["actors"]
        assert (config.actors.count, config.actors.cells) == (expected["count"], expected["cells"])
        assert config.operations.actor_resource == "sim_slot"  # the chart's default, kept under a custom config


def test_the_redis_password_is_generated_never_in_values_and_only_in_its_secret() -> None:
    assert "password" not in DEFAULTS["redis"] and DEFAULTS["redis"]["existingSecret"] == ""
    objects = render()
    secret = one(objects, "Secret", "-redis")
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32 and secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    others = [o for o in objects if o is not secret]
    assert password not in yaml.safe_dump_all(others)
    second = base64.b64decode(one(render(), "Secret", "-redis")["data"]["redis-password"]).decode()
    assert second != password


def test_an_unknown_mode_is_refused_with_the_key_named() -> None:
    with pytest.raises(Exception, match=r"train\.mode: must be job or cluster"):
        render({"train": {"mode": "daemon"}})


@pytest.mark.parametrize("values", [None, CUSTOM], ids=["default", "custom"])
def test_the_chart_lints_clean(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=False)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    # the only warning: the optional KubeRay operator chart is fetched by `helm dependency build`
    assert [m["error"] for m in problems] == ["chart directory is missing these dependencies: kuberay-operator"]
    assert not report["errors"]


def test_a_shard_started_as_the_chart_starts_it_takes_its_limits_and_sampler_from_the_training_config(
    tmp_path: Path,
) -> None:
    from actors.trajectory import grasp_signature
    from graspfleet.ports import free_port
    from replay.client import shard_info
    from replay.process import ShardProcess

    (tmp_path / "train.yaml").write_text(yaml.safe_dump({"replay": {"capacity": 12_345, "sampler": "prioritized"}}))
    config = load(TrainConfig, tmp_path / "train.yaml")
    from graspfleet.spec import observation_spec

    shard = ShardProcess(
        free_port(),
        grasp_signature(observation_spec(config.cell)),
        tmp_path,
        ["--train-config", str(tmp_path / "train.yaml"), "--shards", "2"],
        serve=("-m", "orchestrator.cli", "replay", "serve"),  # the chart's `graspfleet replay serve`
    )
    try:
        info = shard_info(shard.address)
        assert info.capacity == 12_345 and info.sampler == "prioritized"
    finally:
        shard.stop()


def test_the_dockerfile_builds_the_image_the_chart_expects() -> None:
    """The image runs as the chart's user, pins the project's torch, and its Ray matches the chart's."""
    root = CHART.parents[1]
    dockerfile = (root / "Dockerfile").read_text()
    user = DEFAULTS["podSecurityContext"]["runAsUser"]
    assert f"USER {user}:{user}" in dockerfile and f"--uid {user}" in dockerfile
    assert "ARG TORCH_VERSION=2.13.0" in dockerfile
    pinned_ray = next(line for line in (root / "pyproject.toml").read_text().splitlines() if '"ray[' in line)
    assert f"=={DEFAULTS['ray']['version']}" in pinned_ray
    for package in ("graspfleet", "actors", "learner", "replay", "protos"):
        assert f"COPY {package} ./{package}" in dockerfile
