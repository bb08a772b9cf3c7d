"""The run's Prometheus series (``graspfleet_*``): the learner, the episodes, the fleet, the shards.

One declaration style throughout: each series is an attribute of a metrics class, declared in
its constructor against the class's own registry (``graspfleet_curriculum_*`` in
:class:`orchestrator.curriculum.CurriculumMetrics`, ``graspfleet_replay_*`` in
:class:`replay.metrics.ShardMetrics`). The actors' series go through Ray's metrics API instead
(:class:`orchestrator.actor_worker.ActorMetrics`), declared from a table of names, types and
descriptions that the dashboard's test reads without a running Ray.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class LearnerMetrics:
    """The learner's and the driver's Prometheus series, in a registry of their own: the loop sets
    them in both backends; the distributed one serves them on the run's /metrics endpoint."""

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
        self.interventions = Counter(
            "graspfleet_interventions",
            "Training episodes the scripted expert took over, by tier (their outcomes are counted above too)",
            ["tier"],
            registry=r,
        )
        self.intervention_rows_routed = Counter(
            "graspfleet_learner_intervention_rows_routed",
            "Intervention transitions the learner drew from replay and added to its demonstrations",
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
            "graspfleet_learner_threads", "Intra-op threads of the learner (learning.threads)", registry=r
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

    LOSSES = ("critic_loss", "actor_loss", "alpha_loss", "bc_loss", "kl", "reachability")
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
