"""The simulation actor: a batch of randomized grasp cells driven by a CPU copy of the policy.

:class:`SimActor` is a plain class (Ray makes it remote at the edge). Each ``step`` it encodes
the batched observation, samples the policy, adds channel-matched exploration noise, sends the
Cartesian actions through the safe action pipeline (in the actor runtime: a NaN becomes a counted
hold), and streams every cell's step to replay through that cell's trajectory sink, stamped with
the version that chose the action. Announced versions are fetched, decoded and installed by a
:class:`~actors.weight_prefetch.WeightPrefetcher` thread while the cells step (:class:`ActingPolicy`
swaps them in between two inferences); every ``version_check_every`` steps the actor also asks the
weight source for the latest version (one cheap read) and loads new weights only when the version
changed, never unpickling. With a tier source it reads the curriculum's tier at each of those
checks (the prefetcher with each version) and switches its cells to it at its next step
(:meth:`SimActor.set_tier`).
Every finished episode's outcome is kept, stamped with its curriculum generation, for the
learner's curriculum controller.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from actors.exploration import ChannelNoise, ExplorationConfig, entropy_scale
from actors.intervention import InterventionConfig, Interventions
from actors.weight_prefetch import DecodedWeights, WeightPrefetcher, decode_policy_weights
from graspfleet.actions.cartesian import CartesianBackend, cartesian_action_bounds
from graspfleet.actions.config import ActionConfig
from graspfleet.interfaces import BlockingAnnouncements, EpisodeOutcome, TierSource, WeightSource
from graspfleet.networks import NetworkConfig, ObservationEncoder, SE3Policy
from graspfleet.policies import ExpertKind
from graspfleet.sim.batch import OUTCOMES, GraspCellBatch
from graspfleet.sim.config import CellConfig, TierConfig
from graspfleet.sim.tiers import TIER_ORDER, get_tier
from graspfleet.spec import OBSERVATION_KEYS, observation_spec

RECENT_LIMIT = 10_000
"""Episode outcomes and inference timings an actor keeps until its owner takes them."""


class TrajectorySink(Protocol):
    """Where one cell's steps go (``replay.client.ReplayWriter`` is one)."""

    tier: int
    policy_version: int

    def append(self, step: dict[str, Any]) -> None: ...

    def end_episode(self, final_observation: dict[str, Any]) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...

    def close(self, timeout: float | None = None) -> None: ...


@dataclasses.dataclass
class ActorStats:
    env_steps: int = 0
    episodes: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    holds: int = 0
    out_of_bounds_proposed: int = 0
    interventions: int = 0
    """Episodes the scripted expert took over."""
    intervention_steps: int = 0
    """Control steps the expert drove."""
    policy_successes: int = 0
    """Successful episodes the policy finished on its own (no intervention)."""


class PolicyCopy:
    """The encoder and policy on the actor's CPU, loaded from safetensors blobs."""

    def __init__(self, cell: CellConfig, network: NetworkConfig, action: ActionConfig) -> None:
        spec = observation_spec(cell)
        self.encoder = ObservationEncoder(spec, network).eval()
        self.policy = SE3Policy(network.latent_dim, network, *cartesian_action_bounds(cell, action)).eval()
        self.version = -1

    def load(self, blob: bytes) -> int:
        """Decode a published blob (never unpickling) and install it; returns its version."""
        return self.install(decode_policy_weights(blob))

    def install(self, weights: DecodedWeights) -> int:
        """Take decoded weights as the modules' parameters (strict: every key must match; the
        tensors are assigned, not copied — a decoded set is the copy's own); returns their version."""
        # copying them in (load_state_dict's default) is one GIL-releasing tensor op per parameter,
        # each waiting to take the GIL back from the stepping thread: 47 ms beside a busy thread,
        # against 1 ms assigned
        self.encoder.load_state_dict(weights.encoder, assign=True)
        self.policy.load_state_dict(weights.policy, assign=True)
        self.version = weights.version
        return weights.version

    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> tuple[np.ndarray, float]:
        """Actions ``(N, 8)`` — the squashed mean when ``deterministic``, else a sample — and the
        policy's entropy estimate (nats, from a sample either way) for a batched observation."""
        with torch.inference_mode():
            tensors = {k: torch.as_tensor(obs[k]) for k in OBSERVATION_KEYS}
            out = self.policy(self.encoder(tensors))
            action = self.policy.squash(out.mean) if deterministic else out.action
        return action.numpy().astype(np.float64), float(-out.log_prob.mean())


class ActingPolicy:
    """The policy copy the cells act with, and spares that new weights load into.

    A version is loaded into a spare (by the prefetch thread, or by a step's poll) while the cells
    may be acting, and is in use from the moment it is made the active copy — the next inference
    takes it, without waiting for the actor's next step (with eight actors sharing a core, a step
    boundary can be hundreds of milliseconds away). Nothing waits for an inference: one thread
    acts, and of three copies at most two are busy (the active one and the one an inference under
    way took), so an install always finds a free one. Every version made active is logged with its
    wall-clock time.
    """

    COPIES = 3

    def __init__(self, cell: CellConfig, network: NetworkConfig, action: ActionConfig) -> None:
        self._copies = [PolicyCopy(cell, network, action) for _ in range(self.COPIES)]
        self._active = self._copies[0]
        self._acting_with: PolicyCopy | None = None
        """The copy the inference under way took (None between inferences)."""
        self._pointers = threading.Lock()
        """Guards choosing a copy (``_active``, ``_acting_with``); never held while computing."""
        self._installing = threading.Lock()
        """Held by an install: one thread loads a spare at a time."""
        self.installs = 0
        """Versions made active."""
        self.installed: collections.deque[tuple[int, float]] = collections.deque(maxlen=RECENT_LIMIT)
        """(version, unix time) of each version made active, for the weight-sync latency (its owner
        takes them)."""

    @property
    def version(self) -> int:
        """The version the cells act with (−1 before the first install)."""
        return self._active.version

    def install(self, weights: DecodedWeights) -> bool:
        """Load ``weights`` into a copy no inference uses and make it the active one, unless the
        version in use is as new; returns whether it was made active. Safe beside :meth:`act` on
        another thread (one thread acts)."""
        with self._installing:
            if weights.version <= self._active.version:
                return False
            with self._pointers:
                spare = next(c for c in self._copies if c is not self._active and c is not self._acting_with)
            # no inference can take the spare before it is active: it is free while it loads
            spare.install(weights)
            with self._pointers:
                self._active = spare
            self.installed.append((weights.version, time.time()))
            self.installs += 1
            return True

    def act(self, obs: dict[str, np.ndarray], deterministic: bool = False) -> tuple[np.ndarray, float, int]:
        """:meth:`PolicyCopy.act` on the active copy, and the version that computed it."""
        with self._pointers:
            policy = self._acting_with = self._active
        try:
            actions, entropy = policy.act(obs, deterministic)
        finally:
            self._acting_with = None
        return actions, entropy, policy.version


class SimActor:
    """N grasp cells of one tier, a policy copy, exploration noise, and one sink per cell."""

    def __init__(
        self,
        actor_id: str,
        cell: CellConfig,
        tier: str | TierConfig,
        num_cells: int,
        sink_factory: Callable[[str], TrajectorySink],
        weights: WeightSource,
        network: NetworkConfig | None = None,
        exploration: ExplorationConfig | None = None,
        action: ActionConfig | None = None,
        seed: int | None = None,
        version_check_every: int = 50,
        announcements: BlockingAnnouncements | None = None,
        tiers: TierSource | None = None,
        prefetch_niceness: int | None = None,
        interventions: InterventionConfig | None = None,
        expert: ExpertKind = "reactive",
    ) -> None:
        """``version_check_every``: steps between polls of the latest version; with
        ``announcements`` a thread fetches each announced version as it comes, and the first step
        after it is decoded installs it. With ``tiers``, every version check also reads the
        curriculum's tier and switches to it. ``prefetch_niceness``: the prefetch thread's own
        niceness (None: the process's). With ``interventions`` enabled the scripted ``expert`` takes
        over episodes that go wrong (:mod:`actors.intervention`)."""
        self.actor_id = actor_id
        self.cell = cell
        self.action_config = action or ActionConfig()
        self.seed = seed
        self.tier = get_tier(tier) if isinstance(tier, str) else tier
        self.generation = 0
        """The curriculum generation the running episodes belong to."""
        self.env = CartesianBackend(
            GraspCellBatch(cell, self.tier, num_cells, seed=seed), cell, self.action_config, strict=False
        )
        self.num_cells = num_cells
        self.tiers = tiers
        self.finished: collections.deque[EpisodeOutcome] = collections.deque(maxlen=RECENT_LIMIT)
        """Outcomes of the episodes finished since :meth:`take_outcomes` last emptied it (the
        latest ``RECENT_LIMIT`` when nobody takes them)."""
        self._open_steps = np.zeros(num_cells, dtype=np.int64)
        """Steps appended to each sink's open episode."""
        self.policy = ActingPolicy(cell, network or NetworkConfig(), action or ActionConfig())
        self.exploration = exploration or ExplorationConfig()
        self.noise = ChannelNoise(num_cells, self.exploration, seed=seed)
        self.interventions = (
            Interventions(interventions, cell, num_cells, self.action_config, expert)
            if interventions is not None and interventions.enabled
            else None
        )
        self.sinks = [sink_factory(f"{actor_id}/{i}") for i in range(num_cells)]
        self._stamp_tier()
        self.weights = weights
        self.version_check_every = version_check_every
        self.prefetcher = (
            WeightPrefetcher(announcements, weights, self.policy.install, tiers, niceness=prefetch_niceness)
            if announcements is not None
            else None
        )
        self.inference_seconds: collections.deque[float] = collections.deque(maxlen=RECENT_LIMIT)
        """Batched policy inference time of each recent step (the worker drains it into its metrics)."""
        self._stamped_version = -1
        """The policy version the sinks stamp on the steps they take."""
        self.stats = ActorStats()
        self.last_entropy = self.exploration.entropy_high
        self._steps_since_check = version_check_every
        self.obs, _ = self.env.reset(seed=seed)

    def maybe_update_weights(self) -> bool:
        """Switch to the curriculum tier the prefetch thread read with a version, and at a version
        check load the latest weights if their version changed; returns whether this call
        installed weights."""
        self._steps_since_check += 1
        tier = self.prefetcher.take_tier() if self.prefetcher is not None else None
        # the tier read with a blob, unless a version check has since seen a newer generation
        if tier is not None and tier[1] >= self.generation:
            self.set_tier(*tier)
        if self._steps_since_check < self.version_check_every:
            return False
        self._steps_since_check = 0
        if self.tiers is not None:
            current = self.tiers.curriculum_tier()
            if current is not None:
                self.set_tier(*current)
        latest = self.weights.latest_version()
        if latest <= self.policy.version:
            return False
        fetched = self.weights.fetch_weights(latest)
        if fetched is None:
            return False
        return self.policy.install(decode_policy_weights(fetched[1]))

    def take_adoptions(self) -> list[tuple[int, float]]:
        """(version, unix time) of each version put in use since the last call, oldest first."""
        taken = []
        while self.policy.installed:
            taken.append(self.policy.installed.popleft())
        return taken

    def _stamp_tier(self) -> None:
        tier_index = TIER_ORDER.index(self.tier.name) if self.tier.name in TIER_ORDER else 0
        for sink in self.sinks:
            sink.tier = tier_index

    def set_tier(self, tier: str, generation: int) -> bool:
        """Switch every cell to ``tier`` under curriculum ``generation``; returns whether anything
        changed. Episodes under way end here, cut short (not terminal: their last observation is
        kept for bootstrapping), and new ones start on the new tier. Only the environment changes."""
        if generation == self.generation and tier == self.tier.name:
            return False
        self.generation = generation
        if tier != self.tier.name:
            for i in map(int, np.flatnonzero(self._open_steps)):
                self.sinks[i].end_episode({k: self.obs[k][i] for k in OBSERVATION_KEYS})
            self.tier = get_tier(tier)
            seed = None if self.seed is None else self.seed + 7919 * generation
            self.env = CartesianBackend(
                GraspCellBatch(self.cell, self.tier, self.num_cells, seed=seed),
                self.cell,
                self.action_config,
                strict=False,
            )
            self.obs, _ = self.env.reset(seed=seed)
            self.noise.reset(np.ones(self.num_cells, dtype=bool))
            if self.interventions is not None:
                self.interventions.reset(np.ones(self.num_cells, dtype=bool))
            self._open_steps[:] = 0
            self._stamp_tier()
        return True

    def take_outcomes(self) -> list[EpisodeOutcome]:
        """The episodes finished since the last call, oldest first."""
        taken = list(self.finished)
        self.finished.clear()
        return taken

    def step(self) -> dict[str, Any]:
        """One control step of every cell; returns the step's ``info``."""
        self.maybe_update_weights()
        # the method's exploration: channel-matched noise on the policy's mean (a sample of the
        # squashed Gaussian on top of it kept wide twists: actors never succeeded)
        started = time.perf_counter()
        actions, entropy, version = self.policy.act(self.obs, deterministic=True)
        self.inference_seconds.append(time.perf_counter() - started)
        if version != self._stamped_version:
            for sink in self.sinks:
                sink.policy_version = version
            self._stamped_version = version
        self.last_entropy = entropy
        # noise can push a proposal out of the action box: store and send what is inside it
        actions = np.clip(
            actions + self.noise.sample(entropy_scale(entropy, self.exploration)),
            self.env.action_low,
            self.env.action_high,
        )
        expert = self._expert_actions(actions)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        done = terminated | truncated
        taken_over = self._taken_over(obs, done)
        if taken_over.any():
            assert self.interventions is not None
            reward = reward - self.interventions.config.penalty * taken_over
        final = info.get("final_observation")
        for i, sink in enumerate(self.sinks):
            step = {k: self.obs[k][i] for k in OBSERVATION_KEYS}
            step.update(
                action=actions[i].astype(np.float32),  # the noisy proposal, inside the action box
                reward=np.float32(reward[i]),
                terminated=bool(terminated[i] or taken_over[i]),
                truncated=bool(truncated[i]),
                intervention=bool(expert[i]),
            )
            sink.append(step)
            self._open_steps[i] += 1
            if done[i]:
                assert final is not None
                sink.end_episode({k: final[k][i] for k in OBSERVATION_KEYS})
            elif taken_over[i]:
                sink.end_episode({k: obs[k][i] for k in OBSERVATION_KEYS})
        self._open_steps[done | taken_over] = 0
        if done.any():
            self.noise.reset(done)
            for i in map(int, np.flatnonzero(done)):
                self.finished.append(
                    EpisodeOutcome(
                        self.generation,
                        bool(info["outcome_success"][i]),
                        self.tier.name,
                        bool(info["outcome_collision"][i]),
                        bool(info["outcome_slip"][i]),
                        bool(info["outcome_force_overshoot"][i]),
                        intervened=bool(expert[i]),
                    )
                )
            self.stats.episodes += int(done.sum())
            self.stats.policy_successes += int((info["outcome_success"] & ~expert).sum())
            for name in OUTCOMES:
                self.stats.outcomes[name] += int(info[f"outcome_{name}"].sum())
        self.stats.env_steps += self.num_cells
        self.stats.holds += int(info["held"].sum())
        self.stats.out_of_bounds_proposed += int(info["out_of_bounds_proposed"].sum())
        self.obs = obs
        return info

    def _expert_actions(self, actions: np.ndarray) -> np.ndarray:
        """Replace, in place, the actions of the cells the expert drives; returns which cells it
        drives this step (bool ``(N,)``)."""
        if self.interventions is None or not self.interventions.active.any():
            return np.zeros(self.num_cells, dtype=bool)
        driven = self.interventions.active.copy()
        expert = np.clip(self.interventions.expert.act(self.obs), self.env.action_low, self.env.action_high)
        actions[driven] = expert[driven]
        self.stats.intervention_steps += int(driven.sum())
        return driven

    def _taken_over(self, obs: dict[str, np.ndarray], done: np.ndarray) -> np.ndarray:
        """The cells whose episode went wrong on the step just taken (``obs`` its result; ``done``
        the episodes it ended, whose trigger state starts afresh): the expert drives them from the
        next step on (bool ``(N,)``)."""
        if self.interventions is None:
            return np.zeros(self.num_cells, dtype=bool)
        self.interventions.reset(done)
        starting = self.interventions.triggered(obs) & ~done
        if starting.any():
            self.interventions.take_over(starting)
            self.stats.interventions += int(starting.sum())
        return starting

    def run(self, steps: int) -> ActorStats:
        """``steps`` control steps, then flush every sink."""
        for _ in range(steps):
            self.step()
        for sink in self.sinks:
            sink.flush()
        return self.stats

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
        for sink in self.sinks:
            sink.close()
