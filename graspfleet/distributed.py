"""The distributed training run: Ray actors, gRPC replay shards, a Redis control plane, the learner.

``train_distributed`` starts (or joins) each part:

- Redis: a private ``redis-server`` in the run directory unless ``redis_url`` is given;
- Ray: a local cluster unless ``address`` is given; actors are ``ActorWorker``s made remote with
  ``max_restarts=-1``, so an actor that dies is restarted and streams again; their count follows
  the control plane's desired count (``graspfleet actors scale``): an ``ActorFleet`` starts actors
  or drains them, each flushing its trajectories before it stops;
- replay: ``shards`` shard processes (or the running ones ``replay`` names) whose rate limiters
  hold the update-to-data ratio ``updates_per_step``; the run's own checkpoint into
  ``run_dir/replay`` (a resumed run restores them); a ``ShardSupervisor`` heartbeats every shard
  that answers into the control plane and starts the run's own again when they exit;
- the learner runs in this process: it samples from every shard (fan-in with prefetch) and from
  the expert demonstrations, updates, and publishes each ``publish_every``-th version to Redis,
  announcing it so actors load it at their next step (weight sync is measured); every
  ``checkpoint_every`` updates it checkpoints its full state to ``run_dir/learner``, and a run
  started on the same directory resumes from it, numbering versions on from the last.

Learner metrics (``graspfleet_learner_*``, ``graspfleet_curriculum_*``, episodes by tier and
outcome) are served on ``metrics_port`` (a free one by default); each shard serves its own
``graspfleet_replay_*``. The endpoints are listed for Prometheus in
``<run_dir>/../prometheus-targets/<run>.json`` while the run lives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import ray
import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from ray.autoscaler.sdk import request_resources

from actors.evaluator import EvaluationWorker
from actors.worker import ActorWorker
from graspfleet.config import to_mapping
from graspfleet.control_plane import ControlPlane
from graspfleet.curriculum import CURRICULUM_STREAM, CurriculumMetrics, RunCurriculum
from graspfleet.fleet import ACTOR_CONCURRENCY, ActorFailing, ActorFleet, FleetEvent
from graspfleet.plots import plot_tier_history, plot_training_curves
from graspfleet.ports import free_port
from graspfleet.redis_server import RedisServer
from graspfleet.shard_supervisor import ShardSupervisor
from graspfleet.sim.batch import OUTCOMES
from graspfleet.sim.tiers import TIER_ORDER
from graspfleet.spec import observation_spec
from graspfleet.training import (
    BestPolicy,
    DemonstrationBatches,
    JsonLines,
    Progress,
    TrainConfig,
    TrainReport,
    demonstration_rows,
    make_learner,
    new_priorities,
    validation_row,
)
from learner import checkpoint as learner_checkpoint
from learner.curriculum import EpisodeOutcome, ValidationResult
from learner.sac import batch_from_columns
from learner.weights import serialize
from replay import checkpoint as replay_checkpoint
from replay.client import ReplayError, ReplaySampler, ReplayUnavailable, shard_info, signature_of
from replay.process import ShardProcess
from replay.signature import grasp_signature

ACTOR_KIND = "sim"
"""The kind of actor this driver runs (real-arm proxies are the other kind, ``arm``)."""

RATE_LIMIT_SLACK_UPDATES = 200
"""How many updates the learner may run ahead of (or behind) the ratio ``updates_per_step`` sets."""


class RunSetupError(ValueError):
    """The run cannot start as asked; the message says why and what to change."""


class WeightSyncTracker:
    """Weight-sync latency: from a version's publication until every running actor runs it (or a
    newer one). The fleet may change meanwhile: ``fleet`` is the ids of the actors running now."""

    def __init__(self, fleet: Iterable[str] = ()) -> None:
        self.fleet: set[str] = set(fleet)
        self.pending: dict[int, tuple[float, dict[str, float]]] = {}
        """version → (published at, actor id → adopted at)"""
        self.latencies: list[float] = []

    def published(self, version: int, at: float) -> None:
        self.pending[version] = (at, {})

    def adopted(self, actor: str, version: int, at: float) -> list[float]:
        """Record that ``actor`` loaded ``version`` at ``at``; returns the latencies of the versions
        this completed."""
        for pending_version, (_, adopters) in self.pending.items():
            if pending_version <= version:
                adopters.setdefault(actor, at)
        return self._complete()

    def set_fleet(self, fleet: Iterable[str]) -> list[float]:
        """The running actors changed (one drained, one started); returns the latencies of the
        versions that every remaining actor already runs."""
        self.fleet = set(fleet)
        return self._complete()

    def _complete(self) -> list[float]:
        done = []
        for version, (published, adopters) in list(self.pending.items()):
            if self.fleet and self.fleet <= adopters.keys():
                done.append(max(adopters[a] for a in self.fleet) - published)
                del self.pending[version]
        self.latencies.extend(done)
        return done


class LearnerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter("graspfleet_learner_updates", "Learner updates", registry=r)
        self.version = Gauge("graspfleet_learner_weights_version", "Latest published weights version", registry=r)
        self.env_steps = Counter("graspfleet_env_steps", "Environment steps reported by actors", registry=r)
        self.episodes = Counter("graspfleet_episodes", "Training episodes finished, by tier", ["tier"], registry=r)
        self.outcomes = Counter(
            "graspfleet_episode_outcomes",
            "Training episodes by tier and outcome (success, collision, slip, force_overshoot)",
            ["tier", "outcome"],
            registry=r,
        )
        self.version_lag = Gauge(
            "graspfleet_weights_version_lag",
            "Published weights version minus the oldest version an actor reported running",
            registry=r,
        )
        self.sample_wait = Counter("graspfleet_learner_sample_wait_seconds", "Time waiting for batches", registry=r)
        self.losses = Gauge(
            "graspfleet_learner_loss",
            "Learner losses of the last update (name: critic_loss, actor_loss, alpha_loss, bc_loss, kl)",
            ["name"],
            registry=r,
        )
        self.alpha = Gauge("graspfleet_learner_alpha", "SAC temperature", registry=r)
        self.q_value = Gauge("graspfleet_learner_q_value", "Mean Q of the last batch (first critic)", registry=r)
        self.policy_entropy = Gauge(
            "graspfleet_learner_policy_entropy", "Policy entropy estimate on the last batch (nats)", registry=r
        )
        self.grad_norm = Gauge(
            "graspfleet_learner_grad_norm",
            "Gradient norm of the policy head's channel (position, force) in the last update",
            ["channel"],
            registry=r,
        )
        self.learning_rate = Gauge(
            "graspfleet_learner_learning_rate",
            "Learning rate of the policy head's channel (reduced while its gradient norm exceeds its threshold)",
            ["channel"],
            registry=r,
        )
        self.updates_per_second = Gauge(
            "graspfleet_learner_updates_per_second",
            "Learner updates per second since the previous publication",
            registry=r,
        )
        self.threads = Gauge(
            "graspfleet_learner_threads", "Intra-op threads of the learner (train.learner_threads)", registry=r
        )
        self.actor_restarts = Counter("graspfleet_actor_restarts", "Actor processes found restarted", registry=r)
        self.actors_desired = Gauge(
            "graspfleet_actors_desired", "Actors the control plane asks for, by kind", ["kind"], registry=r
        )
        self.actors_running = Gauge(
            "graspfleet_actors_running", "Actors streaming (they have reported), by kind", ["kind"], registry=r
        )
        self.actors_draining = Gauge(
            "graspfleet_actors_draining", "Actors flushing their trajectories before they stop", ["kind"], registry=r
        )
        self.actor_lifecycle = Counter(
            "graspfleet_actor_lifecycle",
            "Actor starts, failures and drains "
            "(event: started, running, failed, draining, drained, drain_failed, drain_timeout)",
            ["kind", "event"],
            registry=r,
        )
        self.best_success_rate = Gauge(
            "graspfleet_best_policy_success_rate",
            "Success rate the validation that chose the run's best policy measured",
            registry=r,
        )
        self.best_weights_version = Gauge(
            "graspfleet_best_policy_weights_version", "Weights version of the run's best policy", registry=r
        )
        self.best_tier = Gauge(
            "graspfleet_best_policy_tier", "Curriculum tier of the run's best policy (index, T0 = 0)", registry=r
        )
        self.control_plane_retries = Counter(
            "graspfleet_control_plane_retries",
            "Redis commands of the driver (learner, fleet, curriculum) retried after a connection error or timeout",
            registry=r,
        )
        self.priority_update_failures = Counter(
            "graspfleet_learner_priority_update_failures",
            "Prioritized replay: batches whose new priorities did not reach their shard",
            registry=r,
        )
        self.shards_up = Gauge(
            "graspfleet_replay_shards_up", "Replay shards that answered the driver's last probe", registry=r
        )
        self.shard_restarts = Counter(
            "graspfleet_replay_shard_restarts",
            "Replay shard processes of the run the driver started again after they exited",
            ["shard"],
            registry=r,
        )
        self.weight_sync = Histogram(
            "graspfleet_weight_sync_seconds",
            "From a weights version's publication until every actor runs it",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )

    LOSSES = ("critic_loss", "actor_loss", "alpha_loss", "bc_loss", "kl")
    """The ``name`` labels of ``graspfleet_learner_loss``: keys of ``SACLearner.update``'s result."""

    def show_update(self, result: Mapping[str, float]) -> None:
        """Set the per-update gauges from an update's result."""
        for name in self.LOSSES:
            self.losses.labels(name=name).set(result[name])
        self.alpha.set(result["alpha"])
        self.q_value.set(result["q_mean"])
        self.policy_entropy.set(result["entropy"])
        for channel in ("position", "force"):
            self.grad_norm.labels(channel=channel).set(result[f"{channel}_grad_norm"])
            self.learning_rate.labels(channel=channel).set(result[f"{channel}_lr"])

    def show_best(self, evaluation: Mapping[str, float]) -> None:
        """Set the best-policy gauges from the evaluation row that chose it."""
        self.best_success_rate.set(evaluation["success_rate"])
        self.best_weights_version.set(evaluation["weights_version"])
        self.best_tier.set(evaluation["tier_index"])


@dataclasses.dataclass
class DistributedRun:
    """Handles the driver keeps; exposed for tests."""

    plane: ControlPlane
    shards: list[ShardProcess]
    fleet: ActorFleet
    metrics_port: int | None
    metrics: LearnerMetrics
    """What the learner's endpoint serves."""


PROMETHEUS_TARGETS = "prometheus-targets"
"""Directory beside the run directories where each run lists its /metrics endpoints
(Prometheus ``file_sd`` format; ``deploy/prometheus/prometheus.yml`` watches it)."""


def ray_metrics_endpoints() -> list[str]:
    """host:port of every live Ray node's metrics agent (the actors' series)."""
    return sorted(
        f"{node['NodeManagerAddress']}:{node['MetricsExportPort']}"
        for node in ray.nodes()
        if node.get("Alive") and int(node.get("MetricsExportPort") or -1) > 0  # -1: no metrics agent
    )


def this_node_address() -> str:
    """The address Ray knows this driver's node by (the one other nodes reach it at)."""
    node_id = ray.get_runtime_context().get_node_id()
    return next(str(n["NodeManagerAddress"]) for n in ray.nodes() if n["NodeID"] == node_id)


def prometheus_targets(
    run_dir: Path, run: str, host: str, learner_port: int, shard_ports: list[int], ray_endpoints: list[str]
) -> Path:
    """Write ``<run_dir>/../prometheus-targets/<run>.json``: the learner's, every shard's and every
    Ray node's metrics endpoint (the actors' ``ray_graspfleet_actor_*`` series), labelled with the
    run and the component. Returns the file's path."""
    directory = run_dir.resolve().parent / PROMETHEUS_TARGETS
    directory.mkdir(parents=True, exist_ok=True)
    groups = [
        {"targets": [f"{host}:{learner_port}"], "labels": {"run": run, "component": "learner"}},
        {"targets": [f"{host}:{p}" for p in shard_ports], "labels": {"run": run, "component": "replay"}},
        {"targets": ray_endpoints, "labels": {"run": run, "component": "ray"}},
    ]
    path = directory / f"{run}.json"
    staging = path.with_suffix(".json.writing")
    staging.write_text(json.dumps(groups, indent=1))
    staging.rename(path)  # Prometheus never reads half a file
    return path


def shard_options(config: TrainConfig, shards: int) -> dict[str, int | float | str]:
    """The ``graspfleet replay serve`` options (capacity, sampler, minimum size, rate limiter)
    each of ``shards`` shards of a run of ``config`` needs."""
    replay_rows = config.batch_size - demonstration_rows(config)  # what one update samples from replay
    return {
        "capacity": config.replay.capacity,
        "sampler": config.replay.sampler,
        "priority_exponent": config.replay.priority_exponent,
        "importance_exponent": config.replay.importance_exponent,
        # each shard holds about 1/shards of the data: its minimum is that share
        "min_size": max(1, config.min_replay // shards),
        # the rate limiter holds the update-to-data ratio: sampled rows per inserted step
        "samples_per_insert": replay_rows * config.updates_per_step / config.cells,
        "error_buffer": RATE_LIMIT_SLACK_UPDATES * replay_rows / shards,
    }


def learner_threads(config: TrainConfig, local_cluster: bool, cores: int | None = None) -> int | None:
    """The intra-op threads the learner of a distributed run takes (``train.learner_threads``);
    None: leave torch's default (every core)."""
    if config.learner_threads:
        return config.learner_threads
    if not local_cluster:
        return None
    cores = cores or os.cpu_count() or 1
    return max(1, cores - min(config.actors, cores // 2))


def train_distributed(
    config: TrainConfig,
    run_dir: Path,
    shards: int = 2,
    redis_url: str | None = None,
    address: str | None = None,
    metrics_port: int | None = None,
    host: str | None = None,
    replay: list[str] | None = None,
    steps_per_call: int = 20,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    on_start: Callable[[DistributedRun], None] | None = None,
) -> TrainReport:
    """Train until the actors report ``config.env_steps`` environment steps.

    ``host``: the address the private Redis, the shards and the metrics endpoint bind and are
    reached at; loopback on a local cluster, this node's Ray address when joining one.
    ``replay``: addresses of running shards (``graspfleet replay serve --train-config``, as the
    Helm chart runs them) to use instead of starting ``shards`` of its own."""
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = LearnerMetrics()
    with contextlib.ExitStack() as stack:
        if not ray.is_initialized():
            # "local": a cluster of our own, even where a `ray start` cluster runs on this machine
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            stack.callback(ray.shutdown)
        threads = learner_threads(config, local_cluster=address is None)
        if threads is not None:
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(threads)
        metrics.threads.set(torch.get_num_threads())
        host = host or ("127.0.0.1" if address is None else this_node_address())
        if redis_url is None:
            server = stack.enter_context(RedisServer(directory=run_dir / "redis", host=host))
            redis_url = server.url
        plane = ControlPlane(
            redis_url, run_dir.name.replace(":", "-") or "run", on_retry=metrics.control_plane_retries.inc
        )
        plane.clear_stop()  # a stop asked of an earlier run of this name is not for this one
        # where `graspfleet status --run-dir` finds this run's control plane (its URL may hold a password)
        located = run_dir / "control_plane.json"
        located.touch(mode=0o600)
        located.write_text(json.dumps({"redis_url": redis_url, "run": plane.run}))
        metrics_port = metrics_port or free_port()
        start_http_server(metrics_port, addr=host, registry=metrics.registry)
        signature = grasp_signature(observation_spec(config.cell))
        shard_processes = []
        shard_metrics_ports = []
        shard_args = shard_options(config, shards)
        for index in range(0 if replay else shards):
            checkpoint_dir = run_dir / "replay" / f"shard-{index}"
            if replay_checkpoint.exists(checkpoint_dir):  # a resumed run: its replay must fit this config
                try:
                    replay_checkpoint.check_compatible(checkpoint_dir, signature, config.replay.capacity)
                except ValueError as exc:
                    raise RunSetupError(
                        f"{exc}: resume with the replay settings the run started with, "
                        f"or remove {run_dir / 'replay'} to start with an empty replay"
                    ) from None
            shard_metrics_ports.append(free_port())
            shard = ShardProcess(
                free_port(),
                signature,
                run_dir,
                [
                    *(arg for key, value in shard_args.items() for arg in (f"--{key.replace('_', '-')}", str(value))),
                    "--metrics-port",
                    str(shard_metrics_ports[-1]),
                    # restored when it restarts, and when the run resumes
                    "--checkpoint-dir",
                    str(checkpoint_dir),
                    "--checkpoint-interval",
                    str(config.replay.checkpoint_interval),
                ],
                host=host,
            )
            stack.callback(shard.stop)
            stack.callback(plane.remove_shard, shard.address)
            shard_processes.append(shard)
            plane.heartbeat_shard(shard.address)
        addresses = list(replay) if replay else [s.address for s in shard_processes]
        for address in replay or ():
            served = shard_info(address)
            if signature_of(served) != signature:
                raise RunSetupError(
                    f"--replay {address}: the shard's signature does not match this config's observations"
                )
            if served.sampler != config.replay.sampler:
                raise RunSetupError(
                    f"--replay {address}: the shard's sampler is {served.sampler}, this config's replay.sampler is "
                    f"{config.replay.sampler}: start the shards with --train-config (the config the run uses)"
                )
            plane.heartbeat_shard(address)
        stack.enter_context(  # stops before the shards do
            ShardSupervisor(
                addresses,
                shard_processes,
                plane,
                metrics.shards_up,
                metrics.shard_restarts,
                on_event=plane.append_event,
                interval=config.reconcile_seconds,
            )
        )
        learner = make_learner(config)
        checkpoint_dir = run_dir / "learner"
        resumed = (
            learner_checkpoint.restore(learner, checkpoint_dir) if learner_checkpoint.exists(checkpoint_dir) else -1
        )
        # version numbers continue after a resume, past anything the registry already holds
        version = max(plane.latest_version(), resumed)
        sync = WeightSyncTracker()

        def publish(measure_sync: bool = True) -> int:
            nonlocal version
            version += 1
            blob = serialize(learner.policy_tensors(), version)
            if measure_sync:
                sync.published(version, time.time())
            plane.publish_weights(version, blob)
            metrics.version.set(version)
            return version

        publish(measure_sync=False)  # the actors that load it have not started yet
        env_steps = episodes = successes = 0

        def now() -> dict[str, float]:
            return {"seconds": time.perf_counter() - start, "env_steps": env_steps, "updates": learner.updates}

        demonstrations = DemonstrationBatches(config, learner.device)

        def switch_tier(tier: str, generation: int, state: Mapping[str, Any]) -> None:
            plane.set_curriculum(tier, generation, state)
            demonstrations.switch_tier(tier)

        curriculum = None
        curriculum_metrics = CurriculumMetrics(metrics.registry, config.curriculum.tiers)
        if config.curriculum.enabled:
            events_file = JsonLines(run_dir / "curriculum_events.jsonl")

            def audit(kind: str, fields: Mapping[str, str | int | float]) -> None:
                plane.append_event(kind, fields, stream=CURRICULUM_STREAM)
                events_file.append(kind, fields)

            curriculum = RunCurriculum(
                config.curriculum,
                config.tier,
                learner,
                plane,
                publish,
                set_tier=switch_tier,
                audit=audit,
                metrics=curriculum_metrics,
                run_dir=run_dir,
            )
            saved = learner_checkpoint.saved_curriculum(checkpoint_dir) if resumed >= 0 else None
            curriculum.start(saved, now())
        else:
            curriculum_metrics.tier.set(TIER_ORDER.index(config.tier))
            curriculum_metrics.tier_info.labels(tier=config.tier).set(1)
        if resumed >= 0:
            plane.append_event("learner_resumed", {"updates": learner.updates, "weights_version": version})
        ray_endpoints = ray_metrics_endpoints()
        targets = prometheus_targets(run_dir, plane.run, host, metrics_port, shard_metrics_ports, ray_endpoints)
        stack.callback(targets.unlink, missing_ok=True)  # a finished run is no longer scraped
        resources: dict[str, float] = {config.actor_resource: 1.0} if config.actor_resource else {}
        options: dict[str, Any] = {"concurrency_groups": ACTOR_CONCURRENCY}  # (not in ray.remote's typed overloads)
        remote: Any = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, resources=resources, **options)(
            ActorWorker
        )
        plain = to_mapping(config)

        def start_actor(actor_id: str, index: int) -> Any:
            return remote.remote(actor_id, plain, redis_url, plane.run, addresses, config.seed + index)

        fleet = ActorFleet(
            start_actor,
            steps_per_call,
            close_timeout=config.drain_timeout,
            failure_limit=config.actor_failure_limit,
            failure_window=config.actor_failure_window,
        )
        stack.callback(fleet.kill_all)
        # a fresh run starts with config.actors; a resumed one keeps what operators scaled it to
        if resumed < 0 or plane.desired_actors(ACTOR_KIND) is None:
            plane.set_desired_actors(config.actors, ACTOR_KIND)
        evaluator: Any = None
        validating: Any = None
        validation_request = (config.tier, 0)
        best = BestPolicy(run_dir, resume=resumed >= 0)
        if best.evaluation is not None:  # a resumed run's best so far
            metrics.show_best(best.evaluation)
        if curriculum is not None:
            evaluator = ray.remote(max_restarts=-1, num_cpus=0)(EvaluationWorker).remote(plain, redis_url, plane.run)
            stack.callback(lambda: ray.kill(evaluator))
        resources_requested_for: int | None = None  # the actor count of the last request_resources
        stopping = False

        def reconcile() -> None:
            """Scale the fleet to the desired count; ask the autoscaler for the resources it needs;
            notice a stop request."""
            nonlocal resources_requested_for, stopping
            if plane.stop_requested():
                stopping = True
                return
            desired = plane.desired_actors(ACTOR_KIND)
            desired = config.actors if desired is None else desired
            fleet.scale(desired)
            if config.actor_resource and resources_requested_for != desired:
                request_resources(bundles=[{config.actor_resource: 1.0}] * desired)
                resources_requested_for = desired
            metrics.actors_desired.labels(kind=ACTOR_KIND).set(desired)

        def collect() -> None:
            """Take the actors' finished reports and the fleet's lifecycle changes."""
            nonlocal ray_endpoints
            try:
                reports = fleet.poll()
            except ActorFailing:  # the failure that stops the run goes to the audit stream too
                for event in fleet.take_events():
                    record_event(event)
                raise
            for actor_id, report in reports:
                record_report(actor_id, report)
            events = fleet.take_events()
            if any(event.kind == "running" for event in events):
                # an actor may run on a node the autoscaler just added: list its metrics agent
                endpoints = ray_metrics_endpoints()
                if endpoints != ray_endpoints:
                    ray_endpoints = endpoints
                    prometheus_targets(run_dir, plane.run, host, metrics_port, shard_metrics_ports, ray_endpoints)
            for event in events:
                record_event(event)
                if event.kind in ("drained", "drain_failed", "drain_timeout"):
                    running.pop(event.actor_id, None)
                    pids.pop(event.actor_id, None)
            if events:
                for latency in sync.set_fleet(fleet.running_ids()):
                    metrics.weight_sync.observe(latency)
                metrics.actors_running.labels(kind=ACTOR_KIND).set(fleet.running)
                metrics.actors_draining.labels(kind=ACTOR_KIND).set(fleet.draining)
                plane.set_actor_counts(fleet.running, fleet.draining, ACTOR_KIND)

        def record_event(event: FleetEvent) -> None:
            metrics.actor_lifecycle.labels(kind=ACTOR_KIND, event=event.kind).inc()
            plane.append_event(f"actor_{event.kind}", {"actor": event.actor_id, **event.fields})

        def record_report(actor_id: str, report: Mapping[str, Any]) -> None:
            nonlocal env_steps, episodes, successes
            if pids.get(actor_id, report["pid"]) != report["pid"]:
                metrics.actor_restarts.inc()
            pids[actor_id] = report["pid"]
            env_steps += report["env_steps"]
            episodes += report["episodes"]
            successes += report["successes"]
            outcomes = [EpisodeOutcome(*fields) for fields in report["outcomes"]]
            for outcome in outcomes:
                metrics.episodes.labels(tier=outcome.tier).inc()
                for name in OUTCOMES:
                    if getattr(outcome, name):
                        metrics.outcomes.labels(tier=outcome.tier, outcome=name).inc()
            if curriculum is not None and outcomes:
                curriculum.record_outcomes(outcomes, now())
            adopted.add(report["weights_version"])
            running[actor_id] = report["weights_version"]
            metrics.version_lag.set(version - min(running.values()))
            for adopted_version, at in report["adoptions"]:
                for latency in sync.adopted(actor_id, adopted_version, at):
                    metrics.weight_sync.observe(latency)
            metrics.env_steps.inc(report["env_steps"])

        if on_start is not None:
            on_start(DistributedRun(plane, shard_processes, fleet, metrics_port, metrics))
        sampler = stack.enter_context(
            ReplaySampler(addresses, config.batch_size - demonstrations.size, prefetch=4, n_step=config.sac.n_step)
        )
        plane.set_state(status="training", tier=config.tier)
        adopted: set[int] = set()
        running: dict[str, int] = {}
        """actor id → the weights version it last reported running"""
        pids: dict[str, int] = {}
        last: dict[str, float] = {}

        def record_validation() -> None:
            """Hand the finished validation to the curriculum and offer its policy as the best."""
            nonlocal validating
            with contextlib.suppress(ray.exceptions.RayError):  # its actor died: the next one is due on schedule
                assert curriculum is not None
                result = ValidationResult(**ray.get(validating))
                curriculum.record_validation(result, now())
                validated = plane.fetch_weights(result.weights_version)
                row = validation_row(result, *validation_request)
                if validated is not None and best.offer(validated[1], row):
                    metrics.show_best(row)
                    kept: dict[str, str | int | float] = {
                        "best_tier": validation_request[0],
                        "best_weights_version": result.weights_version,
                        "best_success_rate": result.success_rate,
                    }
                    plane.set_state(**kept)  # what `graspfleet status` shows
                    plane.append_event("best_policy", {**kept, "updates": validation_request[1]})
            validating = None

        progress = Progress(run_dir / "metrics.csv", config.success_window, start)
        reconciled = -math.inf
        last_published_at = time.perf_counter()
        replay_inserted_steps = replay_priority_updates = 0
        try:
            while (
                env_steps < config.env_steps
                and (config.time_budget is None or time.perf_counter() - start < config.time_budget)
                and not stopping
            ):
                if time.perf_counter() - reconciled >= config.reconcile_seconds:
                    reconcile()
                    reconciled = time.perf_counter()
                collect()
                if validating is not None and ray.wait([validating], timeout=0)[0]:
                    record_validation()
                if env_steps < config.min_replay:
                    time.sleep(0.05)
                    continue
                waited = time.perf_counter()
                try:
                    # short waits: actors only step when this loop hands them work
                    batch = sampler.sample(timeout=0.5)
                except ReplayUnavailable:
                    metrics.sample_wait.inc(time.perf_counter() - waited)
                    continue
                metrics.sample_wait.inc(time.perf_counter() - waited)
                last = learner.update(
                    batch_from_columns(batch.columns, learner.device, batch.weights), demonstrations.sample()
                )
                if config.replay.sampler == "prioritized":
                    try:
                        sampler.update_priorities(batch, new_priorities(learner, config.replay), timeout=2.0)
                    except ReplayError:  # its shard went away meanwhile: the batch's items keep their priorities
                        metrics.priority_update_failures.inc()
                metrics.updates.inc()
                metrics.show_update(last)
                if learner.updates % config.checkpoint_every == 0:
                    learner_checkpoint.save(
                        learner, checkpoint_dir, version, None if curriculum is None else curriculum.state()
                    )
                if curriculum is not None and validating is None and curriculum.validation_due(learner.updates):
                    curriculum.validation_requested(learner.updates)
                    validating = evaluator.validate.remote(version, curriculum.tier, curriculum.generation)
                    validation_request = (curriculum.tier, learner.updates)
                if learner.updates % config.publish_every == 0:
                    published_at = time.perf_counter()
                    metrics.updates_per_second.set(config.publish_every / (published_at - last_published_at))
                    last_published_at = published_at
                    publish()
                    plane.set_state(weights_version=version, updates=learner.updates, env_steps=env_steps)
                    row = progress.append(
                        env_steps,
                        episodes,
                        successes,
                        learner.updates,
                        version,
                        last,
                        actor_versions=len(adopted),
                        tier_index=TIER_ORDER.index(config.tier if curriculum is None else curriculum.tier),
                    )
                    if on_progress is not None:
                        on_progress(row)
            # the end: every actor flushes what it streamed before it stops, and a validation
            # under way finishes (the policy it validates may be the run's best)
            fleet.scale(0)
            deadline = time.perf_counter() + config.drain_timeout
            while (fleet.members or validating is not None) and time.perf_counter() < deadline:
                collect()
                if validating is not None and ray.wait([validating], timeout=0)[0]:
                    record_validation()
                time.sleep(0.02)
            shard_infos = [shard_info(address) for address in addresses]
            replay_inserted_steps = sum(info.inserted_steps for info in shard_infos)
            replay_priority_updates = sum(info.priority_updates for info in shard_infos)
            plane.set_state(status="stopped" if stopping else "finished")
            plane.append_event(
                "run_finished",
                {
                    "env_steps": env_steps,
                    "updates": learner.updates,
                    "weights_version": version,
                    "replay_inserted_steps": replay_inserted_steps,
                },
            )
        except KeyboardInterrupt:
            # Ctrl-C: keep what was learned; the same run dir resumes from here
            plane.set_state(status="interrupted")
            plane.append_event("interrupted", {"updates": learner.updates, "weights_version": version})
            raise
        finally:
            learner_checkpoint.save(
                learner, checkpoint_dir, version, None if curriculum is None else curriculum.state()
            )
            (run_dir / "policy.safetensors").write_bytes(serialize(learner.policy_tensors(), version))
            progress.close()
            plot_training_curves(run_dir, f"graspfleet train: {config.tier}")
            plot_tier_history(run_dir, "graspfleet train: curriculum")
    return TrainReport(
        env_steps,
        learner.updates,
        version,
        time.perf_counter() - start,
        episodes,
        successes,
        run_dir / "metrics.csv",
        demonstration_steps=demonstrations.steps,
        weight_sync_seconds=sync.latencies,
        replay_inserted_steps=replay_inserted_steps,
        replay_priority_updates=replay_priority_updates,
        best_evaluation=best.evaluation,
    )
