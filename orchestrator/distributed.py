"""The distributed backend: Ray actors, gRPC replay shards, a Redis control plane; the learner
and the training loop (:mod:`orchestrator.loop`) in this process.

``train_distributed`` starts (or joins) each part, then runs the loop on them:

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

import numpy as np
import ray
import torch
from prometheus_client import start_http_server
from ray.autoscaler.sdk import request_resources

from actors.trajectory import grasp_signature
from graspfleet.config import to_mapping
from graspfleet.interfaces import EpisodeOutcome
from graspfleet.ports import free_port
from graspfleet.spec import observation_spec
from orchestrator.actor_worker import ActorSettings, ActorWorker
from orchestrator.config import TrainConfig, demonstration_rows
from orchestrator.control_plane import ControlPlane
from orchestrator.curriculum import CURRICULUM_STREAM
from orchestrator.evaluation_worker import EvaluationWorker
from orchestrator.evaluations import EvaluationRequest
from orchestrator.fleet import ACTOR_CONCURRENCY, ActorFailing, ActorFleet, FleetEvent
from orchestrator.loop import Collected, TrainingLoop, TrainReport
from orchestrator.metrics import LearnerMetrics
from orchestrator.redis_server import RedisServer
from orchestrator.shard_supervisor import ShardSupervisor
from replay import checkpoint as replay_checkpoint
from replay.client import ReplayError, ReplaySampler, ReplayUnavailable, shard_info, signature_of
from replay.process import ShardProcess
from replay.table import SampleResult

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
    replay_rows = config.learning.batch_size - demonstration_rows(config)  # what one update samples from replay
    return {
        "capacity": config.replay.capacity,
        "sampler": config.replay.sampler,
        "priority_exponent": config.replay.priority_exponent,
        "importance_exponent": config.replay.importance_exponent,
        # each shard holds about 1/shards of the data: its minimum is that share
        "min_size": max(1, config.learning.min_replay // shards),
        # the rate limiter holds the update-to-data ratio: sampled rows per inserted step
        "samples_per_insert": replay_rows * config.learning.updates_per_step / config.actors.cells,
        "error_buffer": RATE_LIMIT_SLACK_UPDATES * replay_rows / shards,
    }


def learner_threads(config: TrainConfig, local_cluster: bool, cores: int | None = None) -> int | None:
    """The intra-op threads the learner of a distributed run takes (``learning.threads``);
    None: leave torch's default (every core)."""
    if config.learning.threads:
        return config.learning.threads
    if not local_cluster:
        return None
    cores = cores or os.cpu_count() or 1
    return max(1, cores - min(config.actors.count, cores // 2))


def start_run_shards(
    stack: contextlib.ExitStack, config: TrainConfig, run_dir: Path, count: int, host: str, plane: ControlPlane
) -> tuple[list[ShardProcess], list[int]]:
    """Start ``count`` shard processes that checkpoint into ``run_dir/replay`` (a resumed run's
    replay, checked against this config, is restored); returns them and their metrics ports."""
    signature = grasp_signature(observation_spec(config.cell))
    processes: list[ShardProcess] = []
    metrics_ports: list[int] = []
    if count == 0:
        return processes, metrics_ports
    options = shard_options(config, count)
    for index in range(count):
        checkpoint_dir = run_dir / "replay" / f"shard-{index}"
        if replay_checkpoint.exists(checkpoint_dir):  # a resumed run: its replay must fit this config
            try:
                replay_checkpoint.check_compatible(checkpoint_dir, signature, config.replay.capacity)
            except ValueError as exc:
                raise RunSetupError(
                    f"{exc}: resume with the replay settings the run started with, "
                    f"or remove {run_dir / 'replay'} to start with an empty replay"
                ) from None
        metrics_ports.append(free_port())
        shard = ShardProcess(
            free_port(),
            signature,
            run_dir,
            [
                *(arg for key, value in options.items() for arg in (f"--{key.replace('_', '-')}", str(value))),
                "--metrics-port",
                str(metrics_ports[-1]),
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
        processes.append(shard)
        plane.heartbeat_shard(shard.address)
    return processes, metrics_ports


def check_running_shards(config: TrainConfig, addresses: Iterable[str], plane: ControlPlane) -> None:
    """Refuse running shards (``--replay``) whose table does not fit ``config``; register the rest."""
    signature = grasp_signature(observation_spec(config.cell))
    for address in addresses:
        served = shard_info(address)
        if signature_of(served) != signature:
            raise RunSetupError(f"--replay {address}: the shard's signature does not match this config's observations")
        if served.sampler != config.replay.sampler:
            raise RunSetupError(
                f"--replay {address}: the shard's sampler is {served.sampler}, this config's replay.sampler is "
                f"{config.replay.sampler}: start the shards with --train-config (the config the run uses)"
            )
        plane.heartbeat_shard(address)


class DistributedBackend:
    """Ray actors, gRPC replay shards and the Redis control plane (:class:`orchestrator.loop.Backend`).

    Built inside ``stack`` once the control plane and the shards are up: it owns the actor fleet
    (scaled to the control plane's desired count every ``reconcile_seconds``), the replay sampler
    (fan-in from every shard, with prefetch; the shards' rate limiters hold the update-to-data
    ratio), the evaluation actor, and the run's Prometheus target list.
    """

    name = "graspfleet train"

    def __init__(
        self,
        stack: contextlib.ExitStack,
        config: TrainConfig,
        run_dir: Path,
        plane: ControlPlane,
        redis_url: str,
        addresses: list[str],
        metrics: LearnerMetrics,
        metrics_endpoint: tuple[str, int],
        shard_metrics_ports: list[int],
        steps_per_call: int,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.plane = plane
        self.weights = plane
        self.addresses = addresses
        self.metrics = metrics
        self.host, self.metrics_port = metrics_endpoint
        self.shard_metrics_ports = shard_metrics_ports
        self.sync = WeightSyncTracker()
        self.version = -1
        self.running: dict[str, int] = {}
        """actor id → the weights version it last reported running"""
        self.adopted: set[int] = set()
        """Every weights version an actor reported running."""
        self.pids: dict[str, int] = {}
        self.stopping = False
        """Set once the run ends (an operator's stop, or the loop's end): no more reconciling."""
        self.stop_asked = False
        self.reconciled = -math.inf
        self.resources_requested_for: int | None = None  # the actor count of the last request_resources
        self.ray_endpoints = ray_metrics_endpoints()
        self.targets = prometheus_targets(
            run_dir, plane.run, self.host, self.metrics_port, shard_metrics_ports, self.ray_endpoints
        )
        stack.callback(self.targets.unlink, missing_ok=True)  # a finished run is no longer scraped
        resources: dict[str, float] = (
            {config.operations.actor_resource: 1.0} if config.operations.actor_resource else {}
        )
        options: dict[str, Any] = {"concurrency_groups": ACTOR_CONCURRENCY}  # (not in ray.remote's typed overloads)
        remote: Any = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0, resources=resources, **options)(
            ActorWorker
        )
        settings = to_mapping(ActorSettings.of_run(config))

        def start_actor(actor_id: str, index: int) -> Any:
            return remote.remote(actor_id, settings, redis_url, plane.run, addresses, config.seed + index)

        self.fleet = ActorFleet(
            start_actor,
            steps_per_call,
            close_timeout=config.operations.drain_timeout,
            failure_limit=config.operations.actor_failure_limit,
            failure_window=config.operations.actor_failure_window,
        )
        stack.callback(self.fleet.kill_all)
        self.evaluator: Any = None
        if config.curriculum.enabled or config.evaluation.every:
            self.evaluator = ray.remote(max_restarts=-1, num_cpus=0)(EvaluationWorker).remote(
                to_mapping(config), redis_url, plane.run
            )
            stack.callback(lambda: ray.kill(self.evaluator))
        self.evaluations: list[tuple[EvaluationRequest, Any]] = []
        self.sampler = stack.enter_context(
            ReplaySampler(
                addresses, config.learning.batch_size - demonstration_rows(config), prefetch=4, n_step=config.sac.n_step
            )
        )

    def start_fleet(self, resumed: bool) -> None:
        """A fresh run starts with ``actors.count``; a resumed one keeps what operators scaled it to."""
        if not resumed or self.plane.desired_actors(ACTOR_KIND) is None:
            self.plane.set_desired_actors(self.config.actors.count, ACTOR_KIND)

    # weights, tier, status -------------------------------------------------------------------

    def publish(self, version: int, blob: bytes, first: bool = False) -> None:
        if not first:  # the actors that load the first version have not started yet
            self.sync.published(version, time.time())
        self.plane.publish_weights(version, blob)
        self.version = version

    def set_tier(self, tier: str, generation: int, state: Mapping[str, Any]) -> None:
        self.plane.set_curriculum(tier, generation, state)

    def set_state(self, **fields: str | int | float) -> None:
        self.plane.set_state(**fields)

    def append_event(self, kind: str, fields: Mapping[str, str | int | float], curriculum: bool = False) -> None:
        self.plane.append_event(kind, fields, **({"stream": CURRICULUM_STREAM} if curriculum else {}))

    # actors ------------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Scale the fleet to the desired count; ask the autoscaler for the resources it needs;
        notice a stop request."""
        if self.plane.stop_requested():
            self.stop_asked = True
            return
        desired = self.plane.desired_actors(ACTOR_KIND)
        desired = self.config.actors.count if desired is None else desired
        self.fleet.scale(desired)
        resource = self.config.operations.actor_resource
        if resource and self.resources_requested_for != desired:
            request_resources(bundles=[{resource: 1.0}] * desired)
            self.resources_requested_for = desired
        self.metrics.actors_desired.labels(kind=ACTOR_KIND).set(desired)

    def collect(self) -> Collected:
        """Reconcile when due, then take the actors' finished reports and the fleet's lifecycle changes."""
        if not self.stopping and time.perf_counter() - self.reconciled >= self.config.operations.reconcile_seconds:
            self.reconcile()
            self.reconciled = time.perf_counter()
        try:
            reports = self.fleet.poll()
        except ActorFailing:  # the failure that stops the run goes to the audit stream too
            for event in self.fleet.take_events():
                self.record_event(event)
            raise
        collected = [self.record_report(actor_id, report) for actor_id, report in reports]
        self.record_fleet_changes(self.fleet.take_events())
        return Collected(
            sum(c.env_steps for c in collected),
            sum(c.episodes for c in collected),
            sum(c.successes for c in collected),
            [o for c in collected for o in c.outcomes],
        )

    def record_fleet_changes(self, events: list[FleetEvent]) -> None:
        if any(event.kind == "running" for event in events):
            # an actor may run on a node the autoscaler just added: list its metrics agent
            endpoints = ray_metrics_endpoints()
            if endpoints != self.ray_endpoints:
                self.ray_endpoints = endpoints
                prometheus_targets(
                    self.run_dir, self.plane.run, self.host, self.metrics_port, self.shard_metrics_ports, endpoints
                )
        for event in events:
            self.record_event(event)
            if event.kind in ("drained", "drain_failed", "drain_timeout"):
                self.running.pop(event.actor_id, None)
                self.pids.pop(event.actor_id, None)
        if events:
            for latency in self.sync.set_fleet(self.fleet.running_ids()):
                self.metrics.weight_sync.observe(latency)
            self.metrics.actors_running.labels(kind=ACTOR_KIND).set(self.fleet.running)
            self.metrics.actors_draining.labels(kind=ACTOR_KIND).set(self.fleet.draining)
            self.plane.set_actor_counts(self.fleet.running, self.fleet.draining, ACTOR_KIND)

    def record_event(self, event: FleetEvent) -> None:
        self.metrics.actor_lifecycle.labels(kind=ACTOR_KIND, event=event.kind).inc()
        self.plane.append_event(f"actor_{event.kind}", {"actor": event.actor_id, **event.fields})

    def record_report(self, actor_id: str, report: Mapping[str, Any]) -> Collected:
        if self.pids.get(actor_id, report["pid"]) != report["pid"]:
            self.metrics.actor_restarts.inc()
        self.pids[actor_id] = report["pid"]
        self.adopted.add(report["weights_version"])
        self.running[actor_id] = report["weights_version"]
        self.metrics.version_lag.set(self.version - min(self.running.values()))
        for adopted_version, at in report["adoptions"]:
            for latency in self.sync.adopted(actor_id, adopted_version, at):
                self.metrics.weight_sync.observe(latency)
        outcomes = [EpisodeOutcome(*fields) for fields in report["outcomes"]]
        return Collected(report["env_steps"], report["episodes"], report["successes"], outcomes)

    def progress_fields(self) -> dict[str, float]:
        oldest = min(self.running.values(), default=-1)
        return {"actor_weights_version": oldest, "actor_versions": len(self.adopted)}

    def stop_requested(self) -> bool:
        return self.stop_asked

    def stop_actors(self) -> None:
        self.stopping = True
        self.fleet.scale(0)

    def actors_stopping(self) -> bool:
        return bool(self.fleet.members)

    # replay ------------------------------------------------------------------------------------

    def replay_ready(self, env_steps: int) -> bool:
        """Whether the actors reported ``min_replay`` steps; waits 50 ms when not (actors step
        only when the loop hands them work, so there is nothing else to do)."""
        if env_steps >= self.config.learning.min_replay:
            return True
        time.sleep(0.05)
        return False

    def updates_due(self) -> int:
        """One: the shards' rate limiters hold the update-to-data ratio (a sample waits when the
        learner is ahead), so the loop collects between any two updates."""
        return 1

    def sample(self, rows: int) -> SampleResult | None:
        assert rows == self.sampler.request.batch_size, "the sampler's batches have the loop's replay rows"
        try:
            return self.sampler.sample(timeout=0.5)  # short waits: actors only step when the loop hands them work
        except ReplayUnavailable:
            return None

    def update_priorities(self, sample: SampleResult, priorities: np.ndarray) -> bool:
        try:
            self.sampler.update_priorities(sample, priorities, timeout=2.0)
        except ReplayError:  # its shard went away meanwhile
            return False
        return True

    # evaluations -------------------------------------------------------------------------------

    def submit(self, request: EvaluationRequest) -> None:
        self.evaluations.append((request, self.evaluator.run.remote(tuple(request))))

    def finished_evaluations(self) -> list[tuple[EvaluationRequest, dict[str, float] | None]]:
        if not self.evaluations:
            return []
        ready = set(ray.wait([ref for _, ref in self.evaluations], num_returns=len(self.evaluations), timeout=0)[0])
        done: list[tuple[EvaluationRequest, dict[str, float] | None]] = []
        for request, ref in [e for e in self.evaluations if e[1] in ready]:
            try:
                done.append((request, ray.get(ref)))
            except ray.exceptions.RayError:  # its actor died: the next one is due on schedule
                done.append((request, None))
        self.evaluations = [e for e in self.evaluations if e[1] not in ready]
        return done

    def pending_evaluations(self) -> int:
        return len(self.evaluations)

    def finish(self, report: TrainReport) -> None:
        infos = [shard_info(address) for address in self.addresses]
        report.replay_inserted_steps = sum(info.inserted_steps for info in infos)
        report.replay_priority_updates = sum(info.priority_updates for info in infos)
        report.weight_sync_seconds = self.sync.latencies


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
    """Start (or join) the run's parts, then run the training loop on them until the actors report
    ``budget.env_steps`` environment steps (or ``budget.seconds``, ``evaluation.target_success``, an operator's stop).

    ``shards``: replay shards to start (ignored with ``replay``); ``redis_url``: an existing control
    plane (default: a private ``redis-server`` in the run directory); ``address``: a Ray cluster to
    join (default: a local one); ``metrics_port``: the learner's /metrics port (default: a free
    one); ``host``: the address the private Redis, the shards and /metrics bind and are reached at
    (loopback on a local cluster, this node's Ray address when joining one); ``replay``: addresses
    of running shards (``graspfleet replay serve --train-config``, as the Helm chart runs them) to
    use instead of starting any; ``steps_per_call``: steps each actor's cells make per call."""
    running_shards = list(replay or ())
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
            redis_url = stack.enter_context(RedisServer(directory=run_dir / "redis", host=host)).url
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
        shard_processes, shard_metrics_ports = start_run_shards(
            stack, config, run_dir, 0 if running_shards else shards, host, plane
        )
        addresses = running_shards or [s.address for s in shard_processes]
        check_running_shards(config, running_shards, plane)
        stack.enter_context(  # stops before the shards do
            ShardSupervisor(
                addresses,
                shard_processes,
                plane,
                metrics.shards_up,
                metrics.shard_restarts,
                on_event=plane.append_event,
                interval=config.operations.reconcile_seconds,
            )
        )
        backend = DistributedBackend(
            stack,
            config,
            run_dir,
            plane,
            redis_url,
            addresses,
            metrics,
            (host, metrics_port),
            shard_metrics_ports,
            steps_per_call,
        )
        loop = TrainingLoop(config, backend, run_dir, metrics, on_progress)
        backend.start_fleet(resumed=loop.resumed >= 0)
        if on_start is not None:
            on_start(DistributedRun(plane, shard_processes, backend.fleet, metrics_port, metrics))
        return loop.run()
