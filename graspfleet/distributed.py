"""The distributed training run: Ray actors, gRPC replay shards, a Redis control plane, the learner.

``train_distributed`` starts (or joins) each part:

- Redis: a private ``redis-server`` in the run directory unless ``redis_url`` is given;
- Ray: a local cluster unless ``address`` is given; actors are ``ActorWorker``s made remote with
  ``max_restarts=-1``, so an actor that dies is restarted and streams again;
- replay: ``shards`` shard processes on loopback, registered in the control plane;
- the learner runs in this process: it samples from every shard (fan-in with prefetch), updates,
  and publishes each ``publish_every``-th version to Redis, where actors pick it up; every
  ``checkpoint_every`` updates it checkpoints its full state to ``run_dir/learner``, and a run
  started on the same directory resumes from it, numbering versions on from the last.

Learner metrics (``graspfleet_learner_*``) are served on ``metrics_port``; each shard serves
its own ``graspfleet_replay_*``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from actors.worker import ActorWorker
from graspfleet.config import to_mapping
from graspfleet.control_plane import ControlPlane
from graspfleet.ports import free_port
from graspfleet.redis_server import RedisServer
from graspfleet.spec import observation_spec
from graspfleet.training import TrainConfig, TrainReport
from learner import checkpoint as learner_checkpoint
from learner.sac import SACLearner, batch_from_columns
from learner.weights import serialize
from replay.client import ReplaySampler, ReplayUnavailable
from replay.process import ShardProcess
from replay.signature import grasp_signature


class LearnerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.updates = Counter("graspfleet_learner_updates", "Learner updates", registry=r)
        self.version = Gauge("graspfleet_learner_weights_version", "Latest published weights version", registry=r)
        self.env_steps = Counter("graspfleet_env_steps", "Environment steps reported by actors", registry=r)
        self.episodes = Counter("graspfleet_episodes", "Episodes finished", ["outcome"], registry=r)
        self.sample_wait = Counter("graspfleet_learner_sample_wait_seconds", "Time waiting for batches", registry=r)
        self.losses = Gauge("graspfleet_learner_loss", "Learner losses", ["name"], registry=r)
        self.alpha = Gauge("graspfleet_learner_alpha", "SAC temperature", registry=r)
        self.actor_restarts = Counter("graspfleet_actor_restarts", "Actor processes found restarted", registry=r)


@dataclasses.dataclass
class DistributedRun:
    """Handles the driver keeps; exposed for tests and ``graspfleet status``."""

    plane: ControlPlane
    shards: list[ShardProcess]
    actors: list[Any]
    metrics_port: int | None


def train_distributed(
    config: TrainConfig,
    run_dir: Path,
    shards: int = 2,
    redis_url: str | None = None,
    address: str | None = None,
    metrics_port: int | None = None,
    steps_per_call: int = 20,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    on_start: Callable[[DistributedRun], None] | None = None,
) -> TrainReport:
    """Train until the actors report ``config.env_steps`` environment steps."""
    start = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = LearnerMetrics()
    with contextlib.ExitStack() as stack:
        if redis_url is None:
            server = stack.enter_context(RedisServer(directory=run_dir / "redis"))
            redis_url = server.url
        plane = ControlPlane(redis_url, run_dir.name.replace(":", "-") or "run")
        # where `graspfleet status --run-dir` finds this run's control plane
        (run_dir / "control_plane.json").write_text(json.dumps({"redis_url": redis_url, "run": plane.run}))
        if metrics_port is not None:
            start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
        signature = grasp_signature(observation_spec(config.cell))
        shard_processes = []
        for _ in range(shards):
            shard = ShardProcess(
                free_port(),
                signature,
                run_dir,
                [
                    "--capacity",
                    str(config.replay.capacity),
                    "--min-size",
                    # each shard holds about 1/shards of the data: its minimum is that share
                    str(max(1, config.min_replay // shards)),
                    "--metrics-port",
                    str(free_port()),
                ],
            )
            stack.callback(shard.stop)
            stack.callback(plane.remove_shard, shard.address)
            shard_processes.append(shard)
            plane.heartbeat_shard(shard.address)
        addresses = [s.address for s in shard_processes]
        learner = SACLearner(
            observation_spec(config.cell), config.cell.gripper, config.network, config.sac, config.device
        )
        checkpoint_dir = run_dir / "learner"
        resumed = (
            learner_checkpoint.restore(learner, checkpoint_dir) if learner_checkpoint.exists(checkpoint_dir) else -1
        )
        # version numbers continue after a resume, past anything the registry already holds
        version = max(plane.latest_version(), resumed) + 1
        plane.publish_weights(version, serialize(learner.policy_tensors(), version))
        if resumed >= 0:
            plane.append_event("learner_resumed", {"updates": learner.updates, "weights_version": version})
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            stack.callback(ray.shutdown)
        remote: Any = ray.remote(max_restarts=-1, max_task_retries=0, num_cpus=0)(ActorWorker)
        plain = to_mapping(config)
        actors: list[Any] = [
            remote.remote(f"actor-{k}", plain, redis_url, plane.run, addresses, config.seed + k)
            for k in range(config.actors)
        ]
        stack.callback(lambda: [ray.kill(a) for a in actors])
        if on_start is not None:
            on_start(DistributedRun(plane, shard_processes, actors, metrics_port))
        sampler = stack.enter_context(ReplaySampler(addresses, config.batch_size, prefetch=4))
        plane.set_state(status="training", tier=config.tier)
        pending = {actor.run.remote(steps_per_call): actor for actor in actors}
        env_steps = episodes = successes = 0
        adopted: set[int] = set()
        pids: dict[int, int] = {}
        last: dict[str, float] = {}
        while env_steps < config.env_steps:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                actor = pending.pop(ref)
                try:
                    report = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                    pending[actor.run.remote(steps_per_call)] = actor  # Ray restarts it
                    continue
                index = actors.index(actor)
                if pids.get(index, report["pid"]) != report["pid"]:
                    metrics.actor_restarts.inc()
                pids[index] = report["pid"]
                env_steps += report["env_steps"]
                episodes += report["episodes"]
                successes += report["successes"]
                adopted.add(report["weights_version"])
                metrics.env_steps.inc(report["env_steps"])
                metrics.episodes.labels(outcome="success").inc(report["successes"])
                pending[actor.run.remote(steps_per_call)] = actor
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
            last = learner.update(batch_from_columns(batch.columns, learner.device, batch.weights))
            metrics.updates.inc()
            for name in ("critic_loss", "actor_loss", "alpha_loss"):
                metrics.losses.labels(name=name).set(last[name])
            metrics.alpha.set(last["alpha"])
            if learner.updates % config.checkpoint_every == 0:
                learner_checkpoint.save(learner, checkpoint_dir, version)
            if learner.updates % config.publish_every == 0:
                version += 1
                plane.publish_weights(version, serialize(learner.policy_tensors(), version))
                metrics.version.set(version)
                plane.set_state(weights_version=version, updates=learner.updates, env_steps=env_steps)
                if on_progress is not None:
                    on_progress(
                        {
                            "seconds": time.perf_counter() - start,
                            "env_steps": env_steps,
                            "updates": learner.updates,
                            "weights_version": version,
                            "episodes": episodes,
                            "success_rate": successes / episodes if episodes else 0.0,
                            "actor_versions": len(adopted),
                            **last,
                        }
                    )
        ray.get(list(pending))
        learner_checkpoint.save(learner, checkpoint_dir, version)
        plane.set_state(status="finished")
        (run_dir / "policy.safetensors").write_bytes(serialize(learner.policy_tensors(), version))
    return TrainReport(env_steps, learner.updates, version, time.perf_counter() - start, episodes, successes, None)
