"""What one Ray actor process runs: a :class:`SimActor` fed by Redis weights and gRPC replay writers.

The class is plain; :func:`orchestrator.distributed.train_distributed` makes it remote. It is
built from plain data (its :class:`ActorSettings` as a mapping, addresses, names), so nothing but
Ray's own actor bookkeeping is pickled; trajectories travel over gRPC and weights as safetensors
through Redis.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import threading
from typing import Any, ClassVar

import ray
import torch

from actors.exploration import ExplorationConfig
from actors.intervention import InterventionConfig
from actors.sim_actor import SimActor
from actors.trajectory import grasp_signature
from graspfleet.actions.config import ActionConfig
from graspfleet.config import from_mapping
from graspfleet.interfaces import EpisodeOutcome
from graspfleet.networks import NetworkConfig
from graspfleet.policies import ExpertKind
from graspfleet.sim.batch import OUTCOMES
from graspfleet.sim.config import CellConfig
from graspfleet.spec import observation_spec
from orchestrator.config import ActorsConfig, TrainConfig
from orchestrator.control_plane import ControlPlane
from replay.client import HashRing, ReplayWriter


@dataclasses.dataclass(frozen=True)
class ActorSettings:
    """What an actor process takes of the run config: its cells, actions, networks, exploration,
    the ``actors`` section, and the operations setting it applies to itself."""

    tier: str
    """The tier its cells start on (with ``follow_curriculum``, the control plane's tier wins)."""
    follow_curriculum: bool
    """Whether the actor reads the curriculum's tier from the control plane."""
    prefetch_niceness: int | None
    """``operations.prefetch_niceness``."""
    actors: ActorsConfig
    cell: CellConfig
    action: ActionConfig
    network: NetworkConfig
    exploration: ExplorationConfig
    interventions: InterventionConfig
    expert: ExpertKind
    """``learning.expert``: the scripted expert that takes over with interventions."""

    @classmethod
    def of_run(cls, config: TrainConfig) -> ActorSettings:
        """The settings of every actor of a run with ``config``."""
        return cls(
            tier=config.tier,
            follow_curriculum=config.curriculum.enabled,
            prefetch_niceness=config.operations.prefetch_niceness,
            actors=config.actors,
            cell=config.cell,
            action=config.action,
            network=config.network,
            exploration=config.exploration,
            interventions=config.interventions,
            expert=config.learning.expert,
        )


class ActorMetrics:
    """The actor's series through Ray's metrics API (each node's metrics agent exports them to
    Prometheus with Ray's ``ray_`` prefix: ``ray_graspfleet_actor_env_steps_total`` …)."""

    TAGS = ("actor", "tier")
    SERIES: ClassVar[dict[str, tuple[str, str]]] = {
        "graspfleet_actor_env_steps": ("counter", "Environment steps"),
        "graspfleet_actor_episodes": ("counter", "Episodes finished"),
        "graspfleet_actor_episode_outcomes": ("counter", "Episodes by outcome (tag outcome)"),
        "graspfleet_actor_success_rate": (
            "gauge",
            "Success over the actor's recent episodes (an episode the expert took over is a failure)",
        ),
        "graspfleet_actor_interventions": ("counter", "Episodes the scripted expert took over"),
        "graspfleet_actor_holds": ("counter", "Steps the safety layer held (safe-action cache)"),
        "graspfleet_actor_out_of_bounds_proposals": ("counter", "Policy proposals outside a bound of the pipeline"),
        "graspfleet_actor_weights_version_lag": ("gauge", "Latest published weights version minus the one loaded"),
        "graspfleet_actor_inference_seconds": ("histogram", "Batched policy inference per step"),
        "graspfleet_actor_control_plane_retries": (
            "counter",
            "Redis commands retried after a connection error or timeout",
        ),
        "graspfleet_actor_replay_retained_bytes": (
            "gauge",
            "Accepted trajectory bytes the actor's writers keep until their shards checkpoint them",
        ),
        "graspfleet_actor_replay_unprotected_chunks": (
            "counter",
            "Accepted chunks released before a shard checkpoint held them (over the retention limit)",
        ),
        "graspfleet_actor_weight_prefetch_failures": (
            "counter",
            "Announced weight versions the prefetch thread could not fetch or decode (the poll loads them)",
        ),
    }
    """Name → (Prometheus type, description); every series is tagged actor and tier, outcomes also outcome."""

    def __init__(self, actor_id: str, window: int) -> None:
        from ray.util import metrics

        def make(name: str) -> Any:
            kind, description = self.SERIES[name]
            tags = (*self.TAGS, "outcome") if name == "graspfleet_actor_episode_outcomes" else self.TAGS
            if kind == "counter":
                return metrics.Counter(name, description, tags)
            if kind == "gauge":
                return metrics.Gauge(name, description, tags)
            return metrics.Histogram(name, description, [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5], tags)

        self.env_steps = make("graspfleet_actor_env_steps")
        self.episodes = make("graspfleet_actor_episodes")
        self.outcomes = make("graspfleet_actor_episode_outcomes")
        self.success_rate = make("graspfleet_actor_success_rate")
        self.interventions = make("graspfleet_actor_interventions")
        self.holds = make("graspfleet_actor_holds")
        self.out_of_bounds = make("graspfleet_actor_out_of_bounds_proposals")
        self.version_lag = make("graspfleet_actor_weights_version_lag")
        self.inference = make("graspfleet_actor_inference_seconds")
        self.control_plane_retries = make("graspfleet_actor_control_plane_retries")
        self.retained_bytes = make("graspfleet_actor_replay_retained_bytes")
        self.unprotected_chunks = make("graspfleet_actor_replay_unprotected_chunks")
        self.prefetch_failures = make("graspfleet_actor_weight_prefetch_failures")
        self.actor_id = actor_id
        self.recent: collections.deque[bool] = collections.deque(maxlen=window)

    def report(
        self, tier: str, env_steps: int, holds: int, out_of_bounds: int, lag: int, inference: list[float],
        outcomes: list[EpisodeOutcome], control_plane_retries: int = 0, retained_bytes: int = 0,
        unprotected_chunks: int = 0, prefetch_failures: int = 0,
    ) -> None:  # fmt: skip
        tags = {"actor": self.actor_id, "tier": tier}
        if env_steps:
            self.env_steps.inc(env_steps, tags)
        if prefetch_failures:
            self.prefetch_failures.inc(prefetch_failures, tags)
        self.retained_bytes.set(retained_bytes, tags)
        if unprotected_chunks:
            self.unprotected_chunks.inc(unprotected_chunks, tags)
        if control_plane_retries:
            self.control_plane_retries.inc(control_plane_retries, tags)
        if holds:
            self.holds.inc(holds, tags)
        if out_of_bounds:
            self.out_of_bounds.inc(out_of_bounds, tags)
        self.version_lag.set(lag, tags)
        for seconds in inference:
            self.inference.observe(seconds, tags)
        for outcome in outcomes:
            tags = {"actor": self.actor_id, "tier": outcome.tier}
            self.episodes.inc(1, tags)
            self.recent.append(outcome.policy_success)
            if outcome.intervened:
                self.interventions.inc(1, tags)
            for name in OUTCOMES:
                if getattr(outcome, name):
                    self.outcomes.inc(1, {**tags, "outcome": name})
        if self.recent:
            self.success_rate.set(sum(self.recent) / len(self.recent), {"actor": self.actor_id, "tier": tier})


class ActorWorker:
    """A SimActor plus its control-plane connection; ``run(steps)`` returns what happened."""

    def __init__(
        self, actor_id: str, settings: dict[str, Any], redis_url: str, run: str, shards: list[str], seed: int
    ) -> None:
        """``settings``: an :class:`ActorSettings` as plain data (``to_mapping``); ``shards``: the
        replay shards' addresses; ``seed``: the seed of the actor's cells and exploration."""
        config = from_mapping(ActorSettings, settings)
        actors = config.actors
        # many actors share a node's cores with the learner: one thread each for batched inference
        torch.set_num_threads(1)
        self.plane = ControlPlane(redis_url, run)
        # the actor's cells go round the shards from where its id hashes: an even spread, where
        # hashing each cell alone could put all of them (and a small run's whole data) on one shard
        shard_order = HashRing(shards).shards_from(actor_id)
        cells = itertools.count()
        # the table signature follows from the config (the launcher checked the shards serve it), so
        # building the writers asks no shard anything: an actor whose shard is down or slow to answer
        # starts stepping, and its writers hold the chunks until the shard takes them
        signature = grasp_signature(observation_spec(config.cell))
        self.actor = SimActor(
            actor_id,
            config.cell,
            config.tier,
            actors.cells,
            sink_factory=lambda name: ReplayWriter(
                [shard_order[next(cells) % len(shard_order)]],
                name,
                signature=signature,
                chunk_length=actors.chunk_length,
                max_pending_chunks=actors.writer_max_pending_chunks,
                max_retained_bytes=int(actors.writer_max_retained_mb * 2**20),
            ),
            weights=self.plane,
            network=config.network,
            exploration=config.exploration,
            action=config.action,
            seed=seed,
            version_check_every=actors.version_check_every,
            announcements=self.plane.weight_notifications(),
            tiers=self.plane if config.follow_curriculum else None,
            prefetch_niceness=config.prefetch_niceness,
            interventions=config.interventions,
            expert=config.expert,
        )
        self.metrics = ActorMetrics(actor_id, actors.success_window)
        self.node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        """The Ray node this actor runs on."""
        self.retries_reported = 0
        """The control plane's retries already counted in the metrics."""
        self.unprotected_reported = 0
        """The writers' unprotected chunks already counted in the metrics."""
        self.prefetch_failures_reported = 0
        """The weight prefetcher's failures already counted in the metrics."""
        self.draining = threading.Event()
        """Set by :meth:`begin_drain`: ``run`` calls return at their next step."""

    def run(self, steps: int) -> dict[str, Any]:
        """Step the cells ``steps`` times (fewer once the actor is draining); returns this call's
        counts, the weights version in use, the (version, unix time) of each weights load since the
        last call, and the outcome of each episode finished (``EpisodeOutcome`` fields, as plain
        tuples)."""
        stats = self.actor.stats
        env, episodes, successes = stats.env_steps, stats.episodes, stats.policy_successes
        holds, out_of_bounds = stats.holds, stats.out_of_bounds_proposed
        for _ in range(steps):
            if self.draining.is_set():
                break
            self.actor.step()
        outcomes = self.actor.take_outcomes()
        writers = [writer.stats() for writer in self.writers]
        unprotected = sum(w.unprotected_chunks for w in writers)
        prefetch_failures = self.actor.prefetcher.failures if self.actor.prefetcher is not None else 0
        self.metrics.report(
            self.actor.tier.name,
            stats.env_steps - env,
            stats.holds - holds,
            stats.out_of_bounds_proposed - out_of_bounds,
            max(0, self.plane.latest_version() - self.actor.policy.version),
            list(self.actor.inference_seconds),
            outcomes,
            self.plane.reconnects - self.retries_reported,
            retained_bytes=sum(w.retained_bytes for w in writers),
            unprotected_chunks=unprotected - self.unprotected_reported,
            prefetch_failures=prefetch_failures - self.prefetch_failures_reported,
        )
        self.retries_reported = self.plane.reconnects
        self.unprotected_reported = unprotected
        self.prefetch_failures_reported = prefetch_failures
        self.actor.inference_seconds.clear()
        return {
            "env_steps": stats.env_steps - env,
            "episodes": stats.episodes - episodes,
            "successes": stats.policy_successes - successes,
            "weights_version": self.actor.policy.version,
            "adoptions": self.actor.take_adoptions(),
            "outcomes": [dataclasses.astuple(o) for o in outcomes],
            "pid": os.getpid(),
            "node": self.node,
        }

    @property
    def writers(self) -> list[ReplayWriter]:
        return self.actor.sinks  # type: ignore[return-value]

    def pid(self) -> int:
        return os.getpid()

    def begin_drain(self, timeout: float | None = None) -> None:
        """The driver is stopping this actor (called beside a running ``run``, in the fleet's control
        concurrency group): from now on its shards admit its chunks past their rate limiters — a
        ``run`` waiting on one goes on — and its ``run`` calls return at their next step."""
        self.draining.set()
        for writer in self.writers:
            writer.begin_drain(timeout)

    def close(self, timeout: float | None = None) -> dict[str, int]:
        """Flush every cell's trajectories to replay and stop the writers (a drain's last call:
        the shards admit these last chunks past their rate limiters); returns the steps appended
        and the steps the shards accepted, which are then equal."""
        self.draining.set()
        if self.actor.prefetcher is not None:
            self.actor.prefetcher.close()
        for writer in self.writers:
            writer.close(timeout, drain=True)
        stats = [writer.stats() for writer in self.writers]
        return {
            "appended_steps": sum(s.appended_steps for s in stats),
            "accepted_steps": sum(s.accepted_steps for s in stats),
        }
