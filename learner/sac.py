"""Soft actor–critic over the grasp cell's observations, with the seed's mechanisms (sections 3–4).

- twin critics (shared force/position by default) on the encoder's latent plus the critic-only
  ``privileged`` observation; target copies updated by Polyak averaging;
- automatic temperature α towards an entropy target, so the stability reward and the sparse
  success reward end up on one scale;
- the actor reads only the (detached) latent: asymmetric actor–critic;
- a tangent-space norm penalty on the twist's Gaussian (not a clip on the manifold);
- per-channel gradient control: after each actor backward pass the gradient norms of the
  position head and the force head are measured, and a head whose norm exceeds its threshold
  has its learning rate multiplied by ``lr_reduction`` (down to ``min_lr``), so both channels
  converge together.

The encoder learns through the critic loss only (its latent is detached for the actor), the
usual arrangement for SAC from pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from graspfleet.geometry.se3_torch import tangent_norm_penalty
from graspfleet.sim.config import GripperConfig
from graspfleet.spec import MODALITIES, ArraySpec
from learner.config import NetworkConfig, SACConfig
from learner.networks import ACTION_DIM, TWIST_DIM, ObservationEncoder, SE3Policy, make_critic
from learner.weights import split_policy_tensors

OBSERVATION_KEYS = (*MODALITIES, "mask")


class Batch(NamedTuple):
    """A batch of transitions as tensors."""

    obs: dict[str, torch.Tensor]
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    weights: torch.Tensor
    """Importance weights of prioritized sampling (ones for uniform)."""


def batch_from_columns(
    columns: Mapping[str, np.ndarray], device: torch.device | str = "cpu", weights: np.ndarray | None = None
) -> Batch:
    """Tensors from sampled replay columns (``obs`` keys, ``next_`` keys, action, reward, terminated)."""

    def tensor(array: np.ndarray) -> torch.Tensor:
        arr = np.asarray(array)
        # batches decoded from gRPC are read-only views of the message bytes
        return torch.as_tensor(arr if arr.flags.writeable else arr.copy(), device=device)

    n = len(columns["reward"])
    return Batch(
        obs={k: tensor(columns[k]) for k in OBSERVATION_KEYS},
        action=tensor(columns["action"]).float(),
        reward=tensor(columns["reward"]).float(),
        terminated=tensor(columns["terminated"]).float(),
        next_obs={k: tensor(columns[f"next_{k}"]) for k in OBSERVATION_KEYS},
        weights=tensor(np.ones(n, np.float32) if weights is None else weights).float(),
    )


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
        gripper: GripperConfig,
        network: NetworkConfig | None = None,
        sac: SACConfig | None = None,
        device: str = "auto",
    ) -> None:
        self.network_config = network or NetworkConfig()
        self.config = sac or SACConfig()
        self.device = resolve_device(device)
        net = self.network_config
        privileged = spec["privileged"].shape[0]
        self.encoder = ObservationEncoder(spec, net).to(self.device)
        self.policy = SE3Policy(net.latent_dim, net, gripper.max_width, gripper.max_force).to(self.device)
        self.q1 = make_critic(net.latent_dim + privileged, net).to(self.device)
        self.q2 = make_critic(net.latent_dim + privileged, net).to(self.device)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_q1 = copy.deepcopy(self.q1).requires_grad_(False)
        self.target_q2 = copy.deepcopy(self.q2).requires_grad_(False)
        self.log_alpha = torch.tensor(np.log(self.config.initial_alpha), device=self.device, requires_grad=True)
        self.target_entropy = (
            -float(ACTION_DIM) if self.config.target_entropy is None else float(self.config.target_entropy)
        )
        self.critic_optimizer = torch.optim.Adam(
            [*self.encoder.parameters(), *self.q1.parameters(), *self.q2.parameters()], lr=self.config.critic_lr
        )
        self.actor_optimizer = torch.optim.Adam(
            [
                {"params": self.policy.trunk.parameters(), "name": "trunk"},
                {"params": self.policy.position_head.parameters(), "name": "position"},
                {"params": self.policy.force_head.parameters(), "name": "force"},
            ],
            lr=self.config.actor_lr,
        )
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=self.config.alpha_lr)
        self.updates = 0

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def _state(self, encoder: nn.Module, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        latent = encoder(obs)
        return latent, torch.cat([latent, obs["privileged"].float()], 1)

    def learning_rates(self) -> dict[str, float]:
        return {g["name"]: float(g["lr"]) for g in self.actor_optimizer.param_groups}

    def update(self, batch: Batch) -> dict[str, float]:
        """One SAC step on ``batch``; returns the step's metrics."""
        cfg = self.config
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            next_latent = self.encoder(batch.next_obs)
            following = self.policy(next_latent)
            _, next_state = self._state(self.target_encoder, batch.next_obs)
            next_q = torch.min(
                self.target_q1(next_state, following.action), self.target_q2(next_state, following.action)
            )
            target = batch.reward + cfg.gamma * (1 - batch.terminated) * (next_q - alpha * following.log_prob)

        latent, state = self._state(self.encoder, batch.obs)
        q1 = self.q1(state, batch.action)
        q2 = self.q2(state, batch.action)
        critic_loss = (batch.weights * ((q1 - target) ** 2 + (q2 - target) ** 2)).mean()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic_optimizer.param_groups[0]["params"], cfg.max_grad_norm)
        self.critic_optimizer.step()

        out = self.policy(latent.detach())
        detached_state = state.detach()
        q_pi = torch.min(self.q1(detached_state, out.action), self.q2(detached_state, out.action))
        penalty = tangent_norm_penalty(out.std[:, :TWIST_DIM], out.mean[:, :TWIST_DIM], cfg.tangent_penalty_weight)
        actor_loss = (alpha * out.log_prob - q_pi + penalty).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        norms = self._control_channel_learning_rates()
        nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        self.actor_optimizer.step()
        # the actor step must not move the critics it was evaluated with
        self.q1.zero_grad(set_to_none=True)
        self.q2.zero_grad(set_to_none=True)

        alpha_loss = -(self.log_alpha * (out.log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optimizer.step()

        with torch.no_grad():
            for net, target_net in (
                (self.encoder, self.target_encoder),
                (self.q1, self.target_q1),
                (self.q2, self.target_q2),
            ):
                for p, tp in zip(net.parameters(), target_net.parameters(), strict=True):
                    tp.lerp_(p, cfg.tau)
        self.updates += 1
        lrs = self.learning_rates()
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "alpha_loss": float(alpha_loss.detach()),
            "alpha": self.alpha,
            "q_mean": float(q1.detach().mean()),
            "entropy": float(-out.log_prob.detach().mean()),
            "position_grad_norm": norms["position"],
            "force_grad_norm": norms["force"],
            "position_lr": lrs["position"],
            "force_lr": lrs["force"],
        }

    def _control_channel_learning_rates(self) -> dict[str, float]:
        cfg = self.config
        thresholds = {"position": cfg.position_grad_threshold, "force": cfg.force_grad_threshold}
        norms = {}
        for group in self.actor_optimizer.param_groups:
            name = group["name"]
            if name not in thresholds:
                continue
            grads = [p.grad for p in group["params"] if p.grad is not None]
            norm = (
                float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
                if grads
                else 0.0
            )
            norms[name] = norm
            if norm > thresholds[name]:
                group["lr"] = max(group["lr"] * cfg.lr_reduction, cfg.min_lr)
        return norms

    def act(self, obs: dict[str, torch.Tensor], deterministic: bool = False) -> torch.Tensor:
        """Actions ``(B, 8)`` for a batch of observations (no gradient)."""
        with torch.no_grad():
            return self.policy(self.encoder(obs), deterministic=deterministic).action

    def policy_tensors(self) -> dict[str, torch.Tensor]:
        """What actors need to act: the encoder's and the policy's parameters and buffers."""
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        tensors.update({f"policy.{k}": v for k, v in self.policy.state_dict().items()})
        return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}

    def load_policy_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Load :meth:`policy_tensors` output (strict: every key must match)."""
        encoder, policy = split_policy_tensors(tensors)
        self.encoder.load_state_dict(encoder)
        self.policy.load_state_dict(policy)
