"""Configuration of the learner's SAC update (method.md §3, §4 give the numbers)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from graspfleet.config import require
from replay.table import MAX_N_STEP


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """The soft actor–critic update with automatic temperature (method.md §4)."""

    gamma: float = 0.99
    reward_scale: float = 1.0
    """Factor on every reward in the TD target, so Q is in units of scaled return: the critics
    then fit values of order 1 instead of the cell's ≈ 0–100 (dense terms of ≤ 1 per step and a
    success bonus of 100 at γ = 0.99). Scale ``initial_alpha`` by the same factor to keep the
    entropy bonus's weight against the rewards (the temperature's own update is scale-free)."""
    n_step: int = 1
    """Steps of reward in each TD target before it bootstraps from the target critics (n-step
    returns, uncorrected for the policy having changed since, as in Ape-X and D4PG); a target
    stops early at its episode's end. 1 is the one-step SAC target."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 0.1
    """Starting temperature; small, so the entropy bonus does not swamp a per-step reward of order 1."""
    critics: int = 2
    """Critics in the ensemble, each with its own weights and target copy (SAC's twin: 2; RLPD: 10)."""
    critic_subset: int = 2
    """Critics drawn at random each update whose minimum is the TD target's next value (RLPD: 2 of
    10; equal to ``critics``, the clipped double-Q minimum over all of them)."""
    actor_q: Literal["min", "mean"] = "min"
    """What the actor maximizes: the minimum over the critics (SAC's twin) or their mean (RLPD,
    whose ensemble's subset minimum already holds the target down)."""
    reachability_weight: float = 0.0
    """method.md §5, layer 2: weight of the differentiable IK penalty in the actor's loss, relative
    to the batch's mean |Q| like the BC and KL terms. The policy's sampled twist goes through the
    pipeline's target pose and DLS IK from the batch's measured joints
    (:meth:`~graspfleet.actions.ik_torch.TorchArmKinematics.command_penalty`); a proposal beyond a
    joint limit, outside the workspace or near a singularity is penalized by how far, so the
    gradient steers the policy out of the region the pipeline would refuse. 0 leaves it out."""
    bf16_encoder: bool = False
    """Run the observation encoder (its convolutions and MLPs, forward and backward, online and
    target) under bfloat16 autocast; its latent, the critics, the policy and the TD target stay
    float32. On CPUs with AVX512-BF16 or AMX and on GPUs the encoder, the largest part of an
    update, costs less; measure with ``bench/update.py`` before relying on it."""
    backup_entropy: bool = True
    """Whether the TD target carries the entropy bonus, ``r + γ(min Q′ − α log π′)`` (SAC), or
    not, ``r + γ min Q′`` (RLPD and SERL: the temperature then shapes only the actor, and Q stays
    the value of the rewards alone, bounded by them)."""
    target_entropy: float | None = None
    """Entropy target of the temperature; None means −(action dimensions)."""
    tangent_penalty_weight: float = 1e-3
    """method.md §3: weight of the tangent-space norm penalty that limits the twist's variance."""
    position_grad_threshold: float = 50.0
    """method.md §3: when the position head's gradient norm (its moving average) exceeds this,
    its learning rate drops. The norm is the whole actor loss's, whose behaviour-cloning term is
    weighted by ``bc_weight`` × the batch's mean |Q|: with the default weights it reads
    1,000–9,000, so both heads sit at ``min_lr`` after ~3,000 updates
    (docs/experiments/2026-12-07-the-temperature-and-the-actor-rate.md)."""
    force_grad_threshold: float = 50.0
    """… likewise for the force head."""
    grad_norm_smoothing: float = 0.99
    """Decay of the per-channel moving average of gradient norms the thresholds are compared with."""
    lr_reduction: float = 0.5
    """Factor a channel's learning rate is multiplied by when its gradient norm is too large."""
    lr_cooldown: int = 500
    """Updates after a reduction before the same channel may be reduced again; a channel whose
    average stays below its threshold this long regains one step, up to its base rate."""
    min_lr: float = 1e-5
    bc_weight: float = 1000.0
    """Weight of the behaviour-cloning term on demonstration rows, relative to the batch's mean |Q|
    (TD3+BC's λ = 1). At 1000 the actor distils the expert and the critics' pull is a thousandth
    of its loss: measured on T0 with the memoryless expert and the pose head, weight 1 rose to
    93–95 % and fell to 62 and 53 %, weight 1000 held 95–100 %
    (docs/experiments/2026-12-07-what-the-encoder-locates.md). The method's warm start uses 0.1
    (method.md §6), which let the policy fall back once RL took over
    (docs/experiments/2026-11-learning-on-T0.md) …"""
    bc_updates: int = 50_000
    """… and it decays linearly to zero over this many updates (the method: ~10k steps)."""
    demo_fraction: float = 0.5
    """Share of each batch drawn from the demonstrations while any are loaded (RLPD's symmetric half)."""
    policy_averaging: float = 0.01
    """Polyak rate of the acting policy: actors, evaluations and published weights use an
    exponential moving average of the encoder and policy weights over ~1/rate updates, not the
    last SGD iterate, whose success on a near-deterministic task swings from one evaluation to
    the next (every episode fails the same way; docs/experiments/2026-11-learning-on-T0.md). 1.0
    acts with the raw iterate."""
    max_grad_norm: float = 100.0
    """Global clip of each network's gradient norm (a backstop, not the per-channel control)."""
    actor_update_every: int = 1
    """Critic updates per actor and temperature update (TD3's policy delay; RLPD and SERL take
    2–4 critic steps per actor step): the actor's share of an update is paid every k-th update."""
    next_action_latent: Literal["online", "target"] = "online"
    """Which encoder's latent of the next observation the policy reads to choose the TD target's
    next action: ``online`` (the encoder being trained: one more encoder pass per update) or
    ``target`` (the target encoder's, which the target critics read anyway: one pass fewer)."""

    pose_weight: float = 100.0
    """Weight of an auxiliary loss, added to the critics', that trains the encoder to predict the
    target object's pose (:data:`~learner.sac.POSE_TARGETS`) from its latent, on rows whose
    privileged state is present. The critics read the privileged pose themselves, so without it
    nothing asks the encoder — whose latent is all the actor sees — to locate the object. At 0 the
    head still learns, on the detached latent: ``pose_loss`` in metrics.csv then measures how well
    the latent locates the object without shaping it. At 1 beside a critic loss of ~5–300 the
    head's error did not fall; at 100 it did, and T0 became stable
    (docs/experiments/2026-12-07-what-the-encoder-locates.md)."""
    pose_scale: float = 0.02
    """Unit of the pose head's position targets (m): a miss of this size costs 1."""

    def __post_init__(self) -> None:
        require(0 <= self.gamma <= 1, "sac.gamma: must be in [0, 1]")
        require(1 <= self.n_step <= MAX_N_STEP, f"sac.n_step: must be in [1, {MAX_N_STEP}]")
        require(0 < self.tau <= 1, "sac.tau: must be in (0, 1]")
        for name in (
            "actor_lr",
            "critic_lr",
            "alpha_lr",
            "initial_alpha",
            "reward_scale",
            "position_grad_threshold",
            "force_grad_threshold",
            "min_lr",
            "max_grad_norm",
        ):
            require(getattr(self, name) > 0, f"sac.{name}: must be > 0")
        require(0 < self.lr_reduction < 1, "sac.lr_reduction: must be in (0, 1)")
        require(0 <= self.grad_norm_smoothing < 1, "sac.grad_norm_smoothing: must be in [0, 1)")
        require(self.lr_cooldown >= 1, "sac.lr_cooldown: must be >= 1")
        require(self.bc_weight >= 0, "sac.bc_weight: must be >= 0")
        require(self.actor_update_every >= 1, "sac.actor_update_every: must be >= 1")
        require(self.critics >= 1, "sac.critics: must be >= 1")
        require(
            1 <= self.critic_subset <= self.critics,
            f"sac.critic_subset: must be in [1, sac.critics = {self.critics}], got {self.critic_subset}",
        )
        require(self.actor_q in ("min", "mean"), f"sac.actor_q: expected min or mean, got {self.actor_q!r}")
        require(
            self.next_action_latent in ("online", "target"),
            f"sac.next_action_latent: expected online or target, got {self.next_action_latent!r}",
        )
        require(self.bc_updates >= 0, "sac.bc_updates: must be >= 0")
        require(0 < self.policy_averaging <= 1, "sac.policy_averaging: must be in (0, 1]")
        require(0 <= self.demo_fraction < 1, "sac.demo_fraction: must be in [0, 1)")
        require(self.tangent_penalty_weight >= 0, "sac.tangent_penalty_weight: must be >= 0")
        require(self.reachability_weight >= 0, "sac.reachability_weight: must be >= 0")
        require(self.pose_weight >= 0, "sac.pose_weight: must be >= 0")
        require(self.pose_scale > 0, "sac.pose_scale: must be > 0 m")
