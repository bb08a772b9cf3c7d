"""The operator's view: alert rules (promtool), the Grafana dashboard, and a real Prometheus server
scraping a real local ``graspfleet train`` run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from graspfleet.ports import free_port
from graspfleet.sim.tiers import TIER_ORDER
from orchestrator.actor_worker import ActorMetrics
from orchestrator.curriculum import CurriculumMetrics
from orchestrator.metrics import LearnerMetrics
from replay.metrics import ShardMetrics
from tests.helpers import small_run_arguments

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "graspfleet.json"
SCRAPE_LABELS = {"run", "component", "instance", "job", "le", "__name__"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: `make setup` installs Debian's prometheus package"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def exported_series() -> dict[str, set[str]]:
    """Every series name graspfleet processes export → its label names."""
    learner = LearnerMetrics()
    CurriculumMetrics(learner.registry, TIER_ORDER)
    series: dict[str, set[str]] = {"up": set()}
    for name, (kind, _) in ActorMetrics.SERIES.items():  # exported by Ray's agent as ray_<name>
        tags = set(ActorMetrics.TAGS) | ({"outcome"} if name.endswith("outcomes") else set())
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}[kind]
        for suffix in suffixes:
            series[f"ray_{name}{suffix}"] = tags | ({"le"} if suffix == "_bucket" else set())
    for registry in (learner.registry, ShardMetrics(CollectorRegistry()).registry):
        for family in registry.collect():
            labels = set(getattr(registry._names_to_collectors[family.name], "_labelnames", ()))  # type: ignore[attr-defined]
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
            for suffix in suffixes.get(family.type, ("",)):
                series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def check_expression(expr: str, series: dict[str, set[str]]) -> None:
    """Every graspfleet series an expression names exists, with the labels it selects or groups by."""
    for name, selector in re.findall(r"\b((?:ray_)?graspfleet_[a-z0-9_]+|up)\b(\{[^}]*\})?", expr):
        assert name in series, f"{name} is not exported by graspfleet (in {expr!r})"
        for label in re.findall(r"(\w+)\s*[=!~]", selector or ""):
            assert label in series[name] | SCRAPE_LABELS, f"{name} has no label {label!r} (in {expr!r})"
    known = set().union(*series.values()) | SCRAPE_LABELS
    for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
        for label in filter(None, (g.strip() for g in group.split(","))):
            assert label in known, f"no graspfleet series has a label {label!r} (in {expr!r})"


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_alert_rules_cover_the_failures_operators_page_on_and_name_real_series() -> None:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    rules = {rule["alert"]: rule for group in groups for rule in group["rules"]}
    assert {
        "GraspfleetCurriculumRollback",
        "GraspfleetSuccessDropped",
        "GraspfleetActorsNotStreaming",
        "GraspfleetLearnerStalled",
        "GraspfleetReplayShardDown",
    } <= set(rules)
    series = exported_series()
    for rule in rules.values():
        check_expression(rule["expr"], series)
        assert rule["labels"]["severity"] in ("warning", "critical")
    tested = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())
    fired = {t["alertname"] for test in tested["tests"] for t in test["alert_rule_test"] if t["exp_alerts"]}
    assert fired == set(rules)  # every alert has a unit test in which it fires


def test_the_dashboard_is_provisionable_and_every_panel_queries_real_series() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "graspfleet-training"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    series = exported_series()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"] for p in panels).lower()
    for wanted in ("tier", "success per tier", "collision", "gate", "steps/s", "replay fill", "rate-limiter",
                   "updates/s", "losses", "α", "lag"):  # fmt: skip
        assert wanted in titles, f"no panel shows {wanted}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            check_expression(target["expr"], series)
    annotations = {a["name"]: a for a in dashboard["annotations"]["list"]}
    assert {"promotions", "rollbacks"} <= set(annotations)
    for annotation in annotations.values():
        check_expression(annotation["expr"], series)
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/graspfleet.yml").read_text())
    assert provider["providers"][0]["type"] == "file"


def _query(port: int, expr: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    reply = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


def _wait_ready(server: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "prometheus exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("prometheus not ready in 60 s")


def test_a_real_prometheus_scrapes_a_local_training_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "watched"
    # the shipped config, pointed at this test's run directories and scraping every second
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    config["scrape_configs"][0]["file_sd_configs"][0]["files"] = [str(runs / "prometheus-targets" / "*.json")]
    config["scrape_configs"][0]["file_sd_configs"][0]["refresh_interval"] = "1s"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: `make setup` installs Debian's prometheus package"
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    command = [str(Path(sys.executable).with_name("graspfleet")), "train", "--run-dir", str(run_dir), "--shards", "2"]
    command += small_run_arguments({"actors.count": 2})
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_ready(server, port)
        deadline = time.monotonic() + 240
        found: dict[str, list[dict[str, Any]]] = {}
        wanted = {
            "tier": "graspfleet_curriculum_tier",
            "current": 'graspfleet_curriculum_current_tier{tier="T0"} == 1',
            "steps": "sum by (run) (rate(graspfleet_env_steps_total[10s])) > 0",
            "updates": "sum by (run) (rate(graspfleet_learner_updates_total[10s])) > 0",
            "shards": 'up{component="replay"} == 1',
            "replay": "sum by (run) (graspfleet_replay_items) > 0",
            "actors": "sum by (run) (ray_graspfleet_actor_env_steps_total) > 0",
        }
        while time.monotonic() < deadline:
            assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
            found = {key: _query(port, expr) for key, expr in wanted.items()}
            if all(found.values()) and len(found["shards"]) == 2:
                break
            time.sleep(2)
        missing = [key for key, value in found.items() if not value]
        assert not missing, f"Prometheus has no {missing} for the run"
        assert found["tier"][0]["metric"]["run"] == "watched" and float(found["tier"][0]["value"][1]) == 0
        assert {s["metric"]["component"] for s in found["shards"]} == {"replay"}
        rules = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10).read())
        names = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
        assert "GraspfleetCurriculumRollback" in names and "GraspfleetReplayShardDown" in names
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the run ends and stops being a scrape target
        run.communicate(timeout=120)
        assert not (runs / "prometheus-targets" / "watched.json").exists()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        server.terminate()
        server.wait(timeout=30)
