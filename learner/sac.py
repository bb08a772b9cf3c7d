"""Soft actor–critic over the grasp cell's observations, with the method's mechanisms (method.md §3–§4).

- an ensemble of critics (SAC's twin by default; the method's shared force/position critic) on
  the encoder's latent plus the critic-only ``privileged`` observation, each with a target copy
  updated by Polyak averaging; the TD target takes the minimum over a random subset of the
  target critics (RLPD), over both of the twin;
- automatic temperature α towards an entropy target, so the stability reward and the sparse
  success reward end up on one scale;
- the actor reads only the (detached) latent: asymmetric actor–critic;
- a tangent-space norm penalty on the twist's Gaussian (not a clip on the manifold);
- optionally the differentiable IK penalty (method.md §5, layer 2): the sampled twist taken
  through the pipeline's target pose and IK from the measured joints, penalized where the
  pipeline would refuse it (beyond a joint limit, outside the workspace, near a singularity);
- per-channel gradient control (:class:`ChannelLearningRates`): the gradient norms of the
  position head and the force head are tracked every update, and a head whose averaged norm
  exceeds its threshold has its learning rate reduced, so both channels converge together;
- the curriculum's KL(π_θ ‖ π_θ,prev-tier) towards a frozen snapshot of the policy taken at the
  last promotion (:meth:`SACLearner.set_kl_reference`), scaled like the BC term, and a learning-rate
  scale the curriculum sets (:meth:`SACLearner.set_lr_scale`);
- an optional batch of demonstrations (the scripted expert's episodes) joins every update for
  the warm start, with a behaviour-cloning term whose weight decays to zero (method.md §3's
  hand-off: BC weight 0.1 for the first ~10k updates).

The encoder learns through the critic loss only (its latent is detached for the actor), the
usual arrangement for SAC from pixels. Two switches trade an update's cost: ``actor_update_every``
(the actor and temperature step every k-th critic step, TD3's policy delay) and
``next_action_latent`` (the TD target's next action read from the target encoder's latent, which
the target critics encode anyway, saving an encoder pass).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from graspfleet.actions.cartesian import JOINT_POSITIONS
from graspfleet.actions.config import ActionConfig
from graspfleet.actions.ik_torch import TorchArmKinematics
from graspfleet.geometry.se3_torch import tangent_norm_penalty
from graspfleet.networks import ACTION_DIM, TWIST_DIM, NetworkConfig, ObservationEncoder, SE3Policy, make_critic
from graspfleet.spec import MASK_KEY, MODALITIES, OBSERVATION_KEYS, ArraySpec
from graspfleet.weights import split_policy_tensors
from learner.config import SACConfig


class Batch(NamedTuple):
    """A batch of transitions as tensors."""

    obs: dict[str, torch.Tensor]
    action: torch.Tensor
    reward: torch.Tensor
    """Rewards ``(B, n)`` of each row's steps, zero after its last (n = 1 for one-step transitions)."""
    horizon: torch.Tensor
    """Steps each row took (1 … n); the bootstrap is discounted by γ^horizon."""
    terminated: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    weights: torch.Tensor
    """Importance weights of prioritized sampling (ones for uniform)."""


POSE_TARGETS = 5
"""What the pose head predicts of the target object: x, y, z (in units of ``sac.pose_scale``) and
sin 4ψ, cos 4ψ of its yaw ψ (a cube's faces repeat every quarter turn)."""


def pose_targets(privileged: torch.Tensor, scale: float) -> torch.Tensor:
    """The pose head's targets ``(B, POSE_TARGETS)`` from ``privileged`` rows (position in m,
    quaternion wxyz, …)."""
    w, x, y, z = privileged[:, 3:7].unbind(1)
    yaw = torch.atan2(2.0 * (x * y + w * z), 1.0 - 2.0 * (y * y + z * z))
    return torch.cat([privileged[:, :3] / scale, torch.sin(4 * yaw)[:, None], torch.cos(4 * yaw)[:, None]], dim=1)


def batch_from_columns(
    columns: Mapping[str, np.ndarray],
    device: torch.device | str = "cpu",
    weights: np.ndarray | None = None,
) -> Batch:
    """Tensors from sampled replay columns (``obs`` keys, ``next_`` keys, action, reward, terminated,
    and for n-step transitions horizon)."""

    def tensor(array: np.ndarray) -> torch.Tensor:
        arr = np.asarray(array)
        # batches decoded from gRPC are read-only views of the message bytes
        return torch.as_tensor(arr if arr.flags.writeable else arr.copy(), device=device)

    reward = np.asarray(columns["reward"], dtype=np.float32)
    n = len(reward)
    return Batch(
        obs={k: tensor(columns[k]) for k in OBSERVATION_KEYS},
        action=tensor(columns["action"]).float(),
        reward=tensor(reward.reshape(n, -1)),
        horizon=tensor(columns.get("horizon", np.ones(n, np.int32))).float(),
        terminated=tensor(columns["terminated"]).float(),
        next_obs={k: tensor(columns[f"next_{k}"]) for k in OBSERVATION_KEYS},
        weights=tensor(np.ones(n, np.float32) if weights is None else weights).float(),
    )


def concat_batches(first: Batch, second: Batch) -> Batch:
    """One batch holding ``first``'s transitions, then ``second``'s."""
    return Batch(
        obs={k: torch.cat([first.obs[k], second.obs[k]]) for k in first.obs},
        action=torch.cat([first.action, second.action]),
        reward=torch.cat([first.reward, second.reward]),
        horizon=torch.cat([first.horizon, second.horizon]),
        terminated=torch.cat([first.terminated, second.terminated]),
        next_obs={k: torch.cat([first.next_obs[k], second.next_obs[k]]) for k in first.next_obs},
        weights=torch.cat([first.weights, second.weights]),
    )


class ChannelLearningRates:
    """The method's per-channel control of the actor's learning rates (position head, force head).

    After each actor backward pass it measures each head's gradient norm and keeps a moving
    average. When a channel's average exceeds its threshold its learning rate is multiplied by
    ``lr_reduction`` (not below ``min_lr``), at most once per ``lr_cooldown`` updates; a channel
    whose average has stayed below its threshold for ``lr_cooldown`` updates regains one step, up
    to its base rate. A single noisy batch therefore cannot collapse a channel's learning rate.
    """

    CHANNELS = ("position", "force")

    def __init__(self, optimizer: torch.optim.Optimizer, config: SACConfig) -> None:
        self.config = config
        self.groups = {g["name"]: g for g in optimizer.param_groups if g["name"] in self.CHANNELS}
        self.thresholds = {"position": config.position_grad_threshold, "force": config.force_grad_threshold}
        self.base_lr = {name: float(g["lr"]) for name, g in self.groups.items()}
        self.average = dict.fromkeys(self.CHANNELS, 0.0)
        self.since_change = dict.fromkeys(self.CHANNELS, 0)
        self.observed = 0

    def observe(self) -> dict[str, float]:
        """Measure the heads' gradient norms now, adjust their learning rates; returns the norms."""
        cfg = self.config
        self.observed += 1
        # bias-corrected moving average, so early updates compare a true mean
        correction = 1.0 - cfg.grad_norm_smoothing**self.observed
        norms = {}
        for name, group in self.groups.items():
            grads = [p.grad for p in group["params"] if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))) if grads else 0.0
            norms[name] = norm
            self.average[name] = cfg.grad_norm_smoothing * self.average[name] + (1 - cfg.grad_norm_smoothing) * norm
            self.since_change[name] += 1
            if self.since_change[name] < cfg.lr_cooldown:
                continue
            too_large = self.average[name] / correction > self.thresholds[name]
            if too_large and group["lr"] > cfg.min_lr:
                group["lr"] = max(group["lr"] * cfg.lr_reduction, cfg.min_lr)
                self.since_change[name] = 0
            elif not too_large and group["lr"] < self.base_lr[name]:
                group["lr"] = min(group["lr"] / cfg.lr_reduction, self.base_lr[name])
                self.since_change[name] = 0
        return norms

    def state(self) -> dict[str, Any]:
        """JSON-ready state for checkpoints."""
        return {
            "average": self.average,
            "since_change": self.since_change,
            "observed": self.observed,
            "base_lr": self.base_lr,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.average = {k: float(v) for k, v in state["average"].items()}
        self.since_change = {k: int(v) for k, v in state["since_change"].items()}
        self.observed = int(state["observed"])
        self.base_lr = {k: float(v) for k, v in state["base_lr"].items()}


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Build graphs in which ``modules``' parameters need no gradient: a backward pass through them
    computes only the gradients of their inputs (the flag is read when the graph is built)."""
    flags = [p.requires_grad for m in modules for p in m.parameters()]
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip((p for m in modules for p in m.parameters()), flags, strict=True):
            p.requires_grad_(flag)


def resolve_device(device: str) -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class SACLearner:
    """Networks, optimizers and the SAC update step."""

    def __init__(
        self,
        spec: dict[str, ArraySpec],
        action_bounds: tuple[np.ndarray, np.ndarray],
        network: NetworkConfig | None = None,
        sac: SACConfig | None = None,
        device: str = "auto",
        kinematics: tuple[TorchArmKinematics, ActionConfig] | None = None,
    ) -> None:
        """``kinematics``: the arm and the action pipeline's settings, which the IK penalty
        (``sac.reachability_weight`` > 0) needs."""
        self.network_config = network or NetworkConfig()
        self.config = sac or SACConfig()
        self.device = resolve_device(device)
        if self.config.reachability_weight > 0 and kinematics is None:
            raise ValueError("sac.reachability_weight > 0 needs the arm's kinematics (SACLearner(kinematics=…))")
        self.kinematics = kinematics
        net = self.network_config
        privileged = spec["privileged"].shape[0]
        self.encoder = ObservationEncoder(spec, net).to(self.device)
        self.policy = SE3Policy(net.latent_dim, net, *action_bounds).to(self.device)
        self.critics = nn.ModuleList(
            make_critic(net.latent_dim + privileged, net) for _ in range(self.config.critics)
        ).to(self.device)
        self.pose_head = nn.Linear(net.latent_dim, POSE_TARGETS).to(self.device)
        """Linear head on the encoder's latent predicting the target's pose: an auxiliary loss
        (``sac.pose_weight`` > 0) or a probe of what the latent knows (0)."""
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)
        self.acting_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.acting_policy = copy.deepcopy(self.policy).requires_grad_(False)
        self.log_alpha = torch.tensor(np.log(self.config.initial_alpha), device=self.device, requires_grad=True)
        self.target_entropy = (
            -float(ACTION_DIM) if self.config.target_entropy is None else float(self.config.target_entropy)
        )
        self.critic_optimizer = torch.optim.Adam(
            [*self.encoder.parameters(), *self.critics.parameters(), *self.pose_head.parameters()],
            lr=self.config.critic_lr,
            foreach=True,
        )
        self.actor_optimizer = torch.optim.Adam(
            [
                {"params": self.policy.trunk.parameters(), "name": "trunk"},
                {"params": self.policy.position_head.parameters(), "name": "position"},
                {"params": self.policy.force_head.parameters(), "name": "force"},
            ],
            lr=self.config.actor_lr,
            foreach=True,
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=self.config.alpha_lr)
        self.channels = ChannelLearningRates(self.actor_optimizer, self.config)
        self._online: list[torch.Tensor] = [*self.encoder.parameters(), *self.critics.parameters()]
        self._targets: list[torch.Tensor] = [*self.target_encoder.parameters(), *self.target_critics.parameters()]
        self._trained: list[torch.Tensor] = [*self.encoder.parameters(), *self.policy.parameters()]
        self._acting: list[torch.Tensor] = [*self.acting_encoder.parameters(), *self.acting_policy.parameters()]
        self.lr_scale = 1.0
        self.kl_weight = 0.0
        self.kl_reference: tuple[ObservationEncoder, SE3Policy] | None = None
        self.updates = 0
        self.last_actor_stats: dict[str, float] = {}
        """What the last actor update measured (reported by the critic updates between actor updates)."""
        self._last_td: tuple[torch.Tensor, torch.Tensor] | None = None
        """The last update's replay rows: every critic's Q ``(critics, B)`` and the target ``(B,)``
        (see :attr:`last_td_errors`)."""

    @property
    def last_td_errors(self) -> torch.Tensor:
        """|TD error| (mean over the critics) of each replay row of the last update, in batch
        order, demonstrations left out: the new priorities of prioritized replay."""
        if self._last_td is None:
            return torch.zeros(0, device=self.device)
        qs, target = self._last_td
        return (qs - target).abs().mean(0)

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def _encode(self, encoder: nn.Module, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The latent ``(B, latent_dim)``, float32; computed in bfloat16 with ``sac.bf16_encoder``."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16_encoder):
            return encoder(obs).float()

    def _state(self, encoder: nn.Module, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        latent = self._encode(encoder, obs)
        return latent, torch.cat([latent, obs["privileged"].float()], 1)

    def learning_rates(self) -> dict[str, float]:
        return {g["name"]: float(g["lr"]) for g in self.actor_optimizer.param_groups}

    def set_lr_scale(self, scale: float) -> None:
        """Scale the critic's and the actor's learning rates (the curriculum halves them on
        promotion and cuts them on rollback); a channel reduced by its gradient control keeps
        its reduction relative to the new base."""
        cfg = self.config
        self.lr_scale = scale
        for group in self.critic_optimizer.param_groups:
            group["lr"] = cfg.critic_lr * scale
        for group in self.actor_optimizer.param_groups:
            name = group["name"]
            if name in self.channels.base_lr:
                reduction = group["lr"] / self.channels.base_lr[name]
                self.channels.base_lr[name] = cfg.actor_lr * scale
                group["lr"] = max(cfg.actor_lr * scale * reduction, min(cfg.min_lr, cfg.actor_lr * scale))
            else:
                group["lr"] = cfg.actor_lr * scale

    def set_kl_reference(self, tensors: Mapping[str, torch.Tensor] | None, weight: float) -> None:
        """Regularize the actor with ``weight`` × KL(π_θ ‖ π_ref) towards the policy in
        ``tensors`` (a :meth:`policy_tensors` snapshot, frozen); None removes the term."""
        self.kl_weight = weight if tensors is not None else 0.0
        if tensors is None:
            self.kl_reference = None
            return
        encoder, policy = split_policy_tensors(tensors)
        reference_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        reference_policy = copy.deepcopy(self.policy).requires_grad_(False)
        reference_encoder.load_state_dict(encoder)
        reference_policy.load_state_dict(policy)
        self.kl_reference = (reference_encoder, reference_policy)

    def kl_reference_tensors(self) -> dict[str, torch.Tensor] | None:
        """The frozen KL reference as :meth:`policy_tensors` would give it (None without one)."""
        if self.kl_reference is None:
            return None
        encoder, policy = self.kl_reference
        tensors = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
        tensors.update({f"policy.{k}": v for k, v in policy.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def bc_weight(self) -> float:
        """The behaviour-cloning weight now: ``bc_weight`` decaying linearly to 0 over ``bc_updates``."""
        cfg = self.config
        if cfg.bc_updates == 0:
            return 0.0
        return cfg.bc_weight * max(0.0, 1.0 - self.updates / cfg.bc_updates)

    def update(self, batch: Batch, demonstrations: Batch | None = None) -> dict[str, float]:
        """One SAC step on ``batch`` plus, when given, a batch of demonstration transitions, which
        join the TD and actor losses. The decaying behaviour-cloning term pulls the demonstration
        rows towards their actions."""
        cfg = self.config
        demos = 0 if demonstrations is None else len(demonstrations.reward)
        if demonstrations is not None:
            batch = concat_batches(batch, demonstrations)  # the demonstrations are its last ``demos`` rows
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            target_latent, next_state = self._state(self.target_encoder, batch.next_obs)
            next_latent = (
                target_latent if cfg.next_action_latent == "target" else self._encode(self.encoder, batch.next_obs)
            )
            following = self.policy(next_latent)
            subset = (
                torch.randperm(cfg.critics)[: cfg.critic_subset].tolist()
                if cfg.critic_subset < cfg.critics
                else range(cfg.critics)
            )
            next_q = torch.stack([self.target_critics[i](next_state, following.action) for i in subset]).amin(0)
            discounts = cfg.gamma ** torch.arange(batch.reward.shape[1], device=self.device, dtype=torch.float32)
            bootstrap = cfg.gamma**batch.horizon * (1 - batch.terminated)
            if cfg.backup_entropy:
                next_q = next_q - alpha * following.log_prob
            target = cfg.reward_scale * (batch.reward @ discounts) + bootstrap * next_q

        latent, state = self._state(self.encoder, batch.obs)
        qs = torch.stack([critic(state, batch.action) for critic in self.critics])
        critic_loss = (batch.weights * ((qs - target) ** 2).sum(0)).mean()
        replay_rows = qs.shape[1] - demos
        self._last_td = (qs.detach()[:, :replay_rows], target[:replay_rows])
        # at weight 0 the head is a linear probe of the detached latent: it measures, not shapes
        pose_loss = self._pose_loss(latent if cfg.pose_weight > 0 else latent.detach(), batch.obs)
        self.critic_optimizer.zero_grad(set_to_none=True)
        (critic_loss + (cfg.pose_weight or 1.0) * pose_loss).backward()
        nn.utils.clip_grad_norm_(self._online, cfg.max_grad_norm, foreach=True)
        self.critic_optimizer.step()

        if self.updates % cfg.actor_update_every == 0 or not self.last_actor_stats:  # (a resumed learner's first)
            self.last_actor_stats = self._update_actor(batch, latent.detach(), state.detach(), demos)

        with torch.no_grad():
            torch._foreach_lerp_(self._targets, self._online, cfg.tau)
            torch._foreach_lerp_(self._acting, self._trained, cfg.policy_averaging)
        self.updates += 1
        lrs = self.learning_rates()
        actor = self.last_actor_stats
        stats = {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": actor["actor_loss"],
            "alpha_loss": actor["alpha_loss"],
            "alpha": self.alpha,
            "q_mean": float(qs.detach().mean()),
            "pose_loss": float(pose_loss.detach()),
        }
        stats.update(actor)  # the rest in the actor step's order (metrics.csv columns)
        return {**stats, "position_lr": lrs["position"], "force_lr": lrs["force"]}

    def _pose_loss(self, latent: torch.Tensor, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean squared error of the pose head on the rows whose privileged state is present (0
        with none), in units of ``sac.pose_scale`` for the position."""
        present = obs[MASK_KEY][:, MODALITIES.index("privileged")].bool()
        if not bool(present.any()):
            return torch.zeros((), device=self.device)
        targets = pose_targets(obs["privileged"][present].float(), self.config.pose_scale)
        return ((self.pose_head(latent[present]) - targets) ** 2).sum(1).mean()

    def _update_actor(self, batch: Batch, latent: torch.Tensor, state: torch.Tensor, demos: int) -> dict[str, float]:
        """One step of the actor (on the detached ``latent``; the critics frozen at ``state``) and
        of the temperature; the losses and gradient norms it measured. Behaviour cloning pulls
        the last ``demos`` rows (the demonstrations) towards their actions."""
        cfg = self.config
        alpha = self.log_alpha.exp().detach()
        out = self.policy(latent)
        with frozen(self.critics):  # the actor's loss reaches the actions, not the critics' weights
            qs_pi = torch.stack([critic(state, out.action) for critic in self.critics])
        q_pi = qs_pi.amin(0) if cfg.actor_q == "min" else qs_pi.mean(0)
        penalty = tangent_norm_penalty(out.std[:, :TWIST_DIM], out.mean[:, :TWIST_DIM], cfg.tangent_penalty_weight)
        actor_loss = (alpha * out.log_prob - q_pi + penalty).mean()
        q_scale = q_pi.detach().abs().mean()  # the regularizers (BC, KL, IK) are weighted relative to it
        bc_loss = torch.zeros((), device=self.device)
        bc_weight = self.bc_weight() if demos else 0.0
        if bc_weight > 0:
            # TD3+BC-style: squared error in the normalized box, scaled to the critic's magnitude
            imitated = torch.tanh(out.mean[-demos:])
            bc_loss = ((imitated - self.policy.normalize(batch.action[-demos:])) ** 2).sum(1).mean()
            actor_loss = actor_loss + bc_weight * q_scale * bc_loss
        kl = torch.zeros((), device=self.device)
        if self.kl_reference is not None and self.kl_weight > 0:
            # KL of the pre-squash Gaussians (tanh is a bijection, so it is the squashed policies' KL)
            with torch.no_grad():
                reference_encoder, reference_policy = self.kl_reference
                reference = reference_policy(reference_encoder(batch.obs), deterministic=True)
            log_ratio = torch.log(reference.std) - torch.log(out.std)
            spread = (out.std**2 + (out.mean - reference.mean) ** 2) / (2 * reference.std**2)
            kl = (log_ratio + spread - 0.5).sum(1).mean()
            actor_loss = actor_loss + self.kl_weight * q_scale * kl
        reachability = torch.zeros((), device=self.device)
        if self.kinematics is not None and cfg.reachability_weight > 0:
            arm, action_config = self.kinematics
            joints = batch.obs["proprio"][:, JOINT_POSITIONS]
            reachability = arm.command_penalty(joints, out.action[:, :TWIST_DIM], action_config).float().mean()
            actor_loss = actor_loss + cfg.reachability_weight * q_scale * reachability
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        norms = self.channels.observe()
        nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm, foreach=True)
        self.actor_optimizer.step()

        alpha_loss = -(self.log_alpha * (out.log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()
        return {
            "actor_loss": float(actor_loss.detach()),
            "alpha_loss": float(alpha_loss.detach()),
            "entropy": float(-out.log_prob.detach().mean()),
            "bc_loss": float(bc_loss.detach()),
            "bc_weight": bc_weight,
            "kl": float(kl.detach()),
            "reachability": float(reachability.detach()),
            "position_grad_norm": norms["position"],
            "force_grad_norm": norms["force"],
        }

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Actions ``(B, 8)`` of the acting (averaged) policy for a batch of observations."""
        with torch.no_grad():
            return self.acting_policy(self.acting_encoder(obs), deterministic=deterministic).action

    def policy_tensors(self) -> dict[str, torch.Tensor]:
        """What actors need to act: the acting encoder's and policy's parameters and buffers."""
        tensors = {f"encoder.{k}": v for k, v in self.acting_encoder.state_dict().items()}
        tensors.update({f"policy.{k}": v for k, v in self.acting_policy.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def load_policy_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`policy_tensors` output (strict: every key must match) as both the trained
        and the acting encoder and policy."""
        encoder, policy = split_policy_tensors(tensors)
        for encoder_copy in (self.encoder, self.acting_encoder):
            encoder_copy.load_state_dict(encoder)
        for policy_copy in (self.policy, self.acting_policy):
            policy_copy.load_state_dict(policy)
