"""The curriculum wired to a live learner, a real Redis control plane, served Prometheus metrics,
the ``graspfleet`` CLI and a real simulation actor: a scripted sequence of outcomes drives it
through a promotion and a rollback, and every view agrees on what happened."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from actors.sim_actor import SimActor
from actors.trajectory import grasp_signature
from graspfleet.interfaces import EpisodeOutcome
from graspfleet.ports import free_port
from graspfleet.weights import serialize
from learner import checkpoint
from learner.curriculum import CurriculumConfig, ValidationResult
from orchestrator.control_plane import ControlPlane
from orchestrator.curriculum import CURRICULUM_STREAM, CurriculumMetrics, RunCurriculum
from orchestrator.learning import make_learner
from orchestrator.plots import plot_tier_history
from orchestrator.redis_server import RedisServer
from replay.local import TableSink
from replay.table import ReplayTable
from tests.helpers import small_train_config

LADDER = ("T0", "T1", "T2")


def scrape(port: int) -> dict[str, float]:
    """``name{labels}`` → value of every sample the endpoint serves."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def graspfleet(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("graspfleet")), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


@pytest.fixture
def redis_server() -> RedisServer:
    with RedisServer() as server:
        yield server


def test_scripted_outcomes_promote_and_roll_back_and_stream_metrics_and_status_agree(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    config = small_train_config(
        curriculum=CurriculumConfig(
            tiers=LADDER, gate_episodes=10, gate_success=0.8, kl_weight=0.5, gate_source="training"
        )
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plane = ControlPlane(redis_server.url, "live")
    (run_dir / "control_plane.json").write_text(json.dumps({"redis_url": redis_server.url, "run": plane.run}))
    learner = make_learner(config)
    version = -1

    def publish() -> int:
        nonlocal version
        version += 1
        plane.publish_weights(version, serialize(learner.policy_tensors(), version))
        return version

    publish()
    registry = CollectorRegistry()
    port = free_port()
    start_http_server(port, addr="127.0.0.1", registry=registry)
    curriculum = RunCurriculum(
        config.curriculum,
        "T0",
        learner,
        plane,
        publish,
        set_tier=plane.set_curriculum,
        audit=lambda kind, fields: plane.append_event(kind, fields, stream=CURRICULUM_STREAM),
        metrics=CurriculumMetrics(registry, LADDER),
        run_dir=run_dir,
    )
    curriculum.start(None, {"updates": 0})
    # a real actor on the control plane's tier
    table = ReplayTable(grasp_signature(), config.replay)
    actor = SimActor(
        "actor-0",
        config.cell,
        "T0",
        2,
        sink_factory=lambda name: TableSink(table, name, config.actors.chunk_length),
        weights=plane,
        network=config.network,
        action=config.action,
        seed=0,
        version_check_every=3,
        tiers=plane,
    )
    for _ in range(3):
        actor.step()
    assert (actor.tier.name, actor.generation) == ("T0", 0)

    # 7 of the first 10 succeed; the window then slides until 8 of the last 10 do, at the 14th
    script = [True] * 3 + [False] * 3 + [True] * 8
    events = curriculum.record_outcomes([EpisodeOutcome(0, s, "T0") for s in script], {"updates": 40})
    assert [e.kind for e in events] == ["promotion"]
    assert curriculum.tier == "T1" and learner.lr_scale == 0.5 and learner.kl_weight == 0.5
    assert learner.learning_rates()["trunk"] == pytest.approx(config.sac.actor_lr / 2)
    promoted_from = version - 1  # the version published at the promotion follows the gate's policy
    assert curriculum.snapshots == [promoted_from]
    # the actor learns the tier within one version check, and its episodes are stamped with it
    assert table.tier_count[1] == 0
    for _ in range(12):
        actor.step()
    assert (actor.tier.name, actor.generation) == ("T1", 1)
    assert table.tier_count[1] > 0  # steps collected on T1 arrive stamped with it
    # late T0 outcomes of generation 0 are ignored
    assert curriculum.record_outcomes([EpisodeOutcome(0, True, "T0")] * 20, {"updates": 41}) == []

    # validations on T1: a reference, then a drop of more than 10 % rolls back to T0
    assert curriculum.record_validation(ValidationResult(1, 50, 0.9, 0.1, version), {"updates": 60}) is None
    event = curriculum.record_validation(ValidationResult(1, 50, 0.5, 0.1, version), {"updates": 80})
    assert event is not None and event.kind == "rollback"
    assert curriculum.tier == "T0" and learner.lr_scale == 0.25 and learner.kl_reference is None
    assert curriculum.snapshots == []
    for _ in range(3):
        actor.step()
    assert (actor.tier.name, actor.generation) == ("T0", 2)

    # the Redis stream
    stream = plane.events(stream=CURRICULUM_STREAM)
    assert [e["kind"] for e in stream] == [
        "promotion",
        "lr_change",
        "gate_reset",
        "rollback",
        "lr_change",
        "gate_reset",
    ]
    promotion, rollback = stream[0], stream[3]
    assert (promotion["from_tier"], promotion["to_tier"], promotion["updates"]) == ("T0", "T1", "40")
    assert float(promotion["gate_success_rate"]) == 0.8 and promotion["gate_episodes"] == "10"
    assert int(promotion["weights_version_after"]) == int(promotion["weights_version_before"]) + 1
    assert (rollback["from_tier"], rollback["to_tier"]) == ("T1", "T0")
    assert float(rollback["validation_success_rate"]) == 0.5 and float(rollback["reference_success_rate"]) == 0.9
    assert (float(rollback["lr_scale_before"]), float(rollback["lr_scale_after"])) == (0.5, 0.25)

    # the metrics
    samples = scrape(port)
    assert samples["graspfleet_curriculum_tier"] == 0
    assert samples['graspfleet_curriculum_promotions_total{tier="T1"}'] == 1
    assert samples['graspfleet_curriculum_rollbacks_total{tier="T1"}'] == 1
    assert samples['graspfleet_curriculum_rollbacks_total{tier="T2"}'] == 0
    assert samples["graspfleet_curriculum_lr_scale"] == 0.25
    assert samples["graspfleet_curriculum_generation"] == 2
    assert samples["graspfleet_curriculum_gate_episodes"] == 0
    assert samples["graspfleet_curriculum_stale_outcomes"] == 20
    assert samples['graspfleet_validation_success_rate{tier="T1"}'] == 0.5

    # graspfleet status and graspfleet curriculum events, as an operator runs them
    report = json.loads(graspfleet("status", "--run-dir", str(run_dir), "--json"))
    assert report["curriculum"]["tier"] == "T0" and report["curriculum"]["generation"] == 2
    assert (report["curriculum"]["promotions"], report["curriculum"]["rollbacks"]) == (1, 1)
    assert [e["kind"] for e in report["tier_history"]] == ["promotion", "rollback"]
    assert report["tier_history"] == [promotion, rollback]
    text = graspfleet("status", "--run-dir", str(run_dir))
    assert "tier history" in text and "T0 → T1" in text and "T1 → T0" in text
    printed = [
        json.loads(line)
        for line in graspfleet("curriculum", "events", "--run-dir", str(run_dir), "--json").splitlines()
    ]
    assert printed == stream

    # tier over time in the run directory
    rows = (run_dir / "curriculum.csv").read_text().splitlines()
    assert [r.split(",")[4:6] for r in rows[1:]] == [["start", "T0"], ["promotion", "T1"], ["rollback", "T0"]]
    assert plot_tier_history(run_dir).read_bytes()[:4] == b"\x89PNG"

    # a restarted learner resumes mid-curriculum from its checkpoint
    feed = [EpisodeOutcome(2, True, "T0")] * 6
    curriculum.record_outcomes(feed, {"updates": 90})
    checkpoint.save(learner, run_dir / "learner", version, curriculum.state())
    resumed_learner = make_learner(config)
    checkpoint.restore(resumed_learner, run_dir / "learner")
    resumed = RunCurriculum(config.curriculum, "T0", resumed_learner, plane, publish, set_tier=plane.set_curriculum)
    resumed.start(checkpoint.saved_curriculum(run_dir / "learner"), {"updates": 90})
    assert resumed.state() == curriculum.state()
    assert resumed_learner.lr_scale == 0.25
    more = [EpisodeOutcome(2, True, "T0")] * 4  # 10 of 10 with the 6 before the restart
    assert [e.kind for e in resumed.record_outcomes(more, {"updates": 95})] == ["promotion"]
    actor.close()
    plane.close()
