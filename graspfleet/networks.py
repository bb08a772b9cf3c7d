"""The networks actors run and the learner trains: observation encoder, SE(3) policy, and the
shared force/position critic.

- :class:`ObservationEncoder` maps the multimodal observation to one latent (a small CNN on
  depth, a 1-D CNN compressing the IMU to 16 features, MLPs on proprio and tactile, an embedding
  of the instruction); each modality's features are multiplied by its presence mask, so a
  dropped modality contributes nothing. It never reads ``privileged``. The method's contrastive
  alignment encoder will replace it behind the same call: ``encoder(obs) → (B, latent_dim)``.
- :class:`SE3Policy` (the actor) outputs a Gaussian over the twist in se(3) and the gripper
  command, in coordinates normalized by the per-step limits, tanh-squashed into the action box
  (the tangent-norm penalty limits the twist's variance). Its output layer is split into a
  position head (twist + width) and a force head (grip force), whose learning rates are
  controlled apart.
- :class:`SharedForcePositionCritic` is the method's critic (method.md §3): the state, with the
  critic-only ``privileged`` observation, through a shared 512-d MLP to a 256-d s_emb; position
  and force actions embedded and added element-wise into a 256-d a_emb; Q = head(s_emb − a_emb)
  with a 2×256 → 1 head. :class:`ConcatCritic` is the ablation.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import nn

from graspfleet.config import require
from graspfleet.sim.instruction import VOCABULARY
from graspfleet.spec import MODALITIES, ArraySpec


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Widths of the encoder, policy and critic."""

    latent_dim: int = 256
    """Width of the observation latent shared by actor and critic."""
    imu_features: int = 16
    """method.md §2: the high-rate IMU is compressed by a 1-D CNN to 16 dims."""
    critic: Literal["shared", "concat"] = "shared"
    """``shared``: the method's force/position critic; ``concat``: a plain MLP on [state, action] (ablation)."""
    critic_state_hidden: int = 512
    """method.md §3: the state goes through a shared 512-d MLP …"""
    critic_embedding: int = 256
    """… to a 256-d s_emb; the action embeddings add up to a 256-d a_emb."""
    critic_head_hidden: int = 256
    """method.md §3: a 2×256 → 1 Q-head on s_emb − a_emb."""
    critic_layer_norm: bool = True
    """LayerNorm before each hidden ReLU of the critics: it bounds how far Q can extrapolate to
    actions the data never shows, which kept the policy from drifting off the demonstrations."""
    policy_hidden: int = 256
    log_std_min: float = -5.0
    log_std_max: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "latent_dim",
            "imu_features",
            "critic_state_hidden",
            "critic_embedding",
            "critic_head_hidden",
            "policy_hidden",
        ):
            require(getattr(self, name) >= 1, f"network.{name}: must be >= 1")
        require(self.critic in ("shared", "concat"), f"network.critic: unknown critic {self.critic!r}")
        require(self.log_std_min < self.log_std_max, "network.log_std_min: must be < log_std_max")


TWIST_DIM = 6
ACTION_DIM = 8
"""Twist (6), gripper width, grip force."""
POSITION_DIMS = slice(0, 7)
FORCE_DIMS = slice(7, 8)
_MASK_INDEX = {name: i for i, name in enumerate(MODALITIES)}


def _mlp(sizes: list[int], activate_last: bool = False, layer_norm: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them (and after the last with ``activate_last``); with
    ``layer_norm`` each activated layer is normalized first."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or activate_last:
            if layer_norm:
                layers.append(nn.LayerNorm(b))
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def rgbd_image(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The CNN's input ``(B, 4, H, W)``: depth (m) then RGB scaled to [0, 1], with channels-last
    strides — built as ``(B, H, W, 4)``, the layout oneDNN's convolutions run in without
    reordering their inputs and gradients (a contiguous NCHW image cost 12 % more per update on
    one thread)."""
    rgb = obs["rgb"].float() / 255.0
    return torch.cat([obs["depth"].float()[..., None], rgb], dim=-1).permute(0, 3, 1, 2)


class ObservationEncoder(nn.Module):
    """Multimodal observation → latent ``(B, latent_dim)``; reads no privileged state."""

    def __init__(self, spec: dict[str, ArraySpec], config: NetworkConfig) -> None:
        super().__init__()
        h, w = spec["depth"].shape
        self.vision = nn.Sequential(
            nn.Conv2d(4, 16, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            vision_features = self.vision(torch.zeros(1, 4, h, w)).shape[1]
        self.vision_out = nn.Linear(vision_features, 128)
        imu_channels = spec["imu"].shape[1]
        self.imu = nn.Sequential(
            nn.Conv1d(imu_channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(16, config.imu_features),
        )
        self.proprio = _mlp([spec["proprio"].shape[0], 64, 64])
        self.tactile = _mlp([math.prod(spec["tactile"].shape), 64])
        self.instruction = nn.Embedding(len(VOCABULARY), 32, padding_idx=0)
        fused = 128 + config.imu_features + 64 + 64 + 32 + len(MODALITIES)
        self.fuse = _mlp([fused, config.latent_dim, config.latent_dim], activate_last=True)
        self.latent_dim = config.latent_dim

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = obs["mask"].float()

        def present(name: str) -> torch.Tensor:
            return mask[:, _MASK_INDEX[name], None]

        vision = self.vision_out(self.vision(rgbd_image(obs))) * torch.minimum(present("depth"), present("rgb"))
        imu = self.imu(obs["imu"].float().transpose(1, 2)) * present("imu")
        proprio = self.proprio(obs["proprio"].float())
        tactile = self.tactile(obs["tactile"].float().flatten(1) / 100.0) * present("tactile")
        tokens = obs["instruction"].long()
        counts = (tokens != 0).sum(1, keepdim=True).clamp_min(1)
        language = self.instruction(tokens).sum(1) / counts * present("instruction")
        return self.fuse(torch.cat([vision, imu, proprio, tactile, language, mask], dim=1))


class PolicyOutput(NamedTuple):
    action: torch.Tensor
    """``(B, 8)``: twist (m, rad per step), width (m), force (N)."""
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    """Of the pre-squash Gaussian, ``(B, 8)``."""


class SE3Policy(nn.Module):
    """Gaussian policy in normalized se(3) × gripper coordinates, squashed into the action box.

    The pre-squash Gaussian ``u ~ N(μ, σ)`` lives in the tangent space with each coordinate in
    units of its per-step limit; ``a = low + (tanh(u) + 1)·(high − low)/2`` puts the twist inside
    the pipeline's step box and the gripper inside its ranges, so the critic only ever sees
    actions the pipeline can execute. ``log_prob`` is the density of ``tanh(u)`` on the
    normalized box [−1, 1]⁸ (the box's constant volume is left out, so the entropy target does not
    depend on units).
    """

    def __init__(self, latent_dim: int, config: NetworkConfig, action_low: np.ndarray, action_high: np.ndarray) -> None:
        super().__init__()
        if np.shape(action_low) != (ACTION_DIM,) or np.shape(action_high) != (ACTION_DIM,):
            raise ValueError(f"action bounds: need {ACTION_DIM} values each")
        if not np.all(np.asarray(action_high) > np.asarray(action_low)):
            raise ValueError("action bounds: every upper bound must exceed its lower bound")
        self.trunk = _mlp([latent_dim, config.policy_hidden, config.policy_hidden], activate_last=True)
        self.position_head = nn.Linear(config.policy_hidden, 2 * 7)
        self.force_head = nn.Linear(config.policy_hidden, 2 * 1)
        self.log_std_min = config.log_std_min
        self.log_std_max = config.log_std_max
        self.action_centre: torch.Tensor
        self.action_half_range: torch.Tensor
        low = torch.as_tensor(np.asarray(action_low), dtype=torch.float32)
        high = torch.as_tensor(np.asarray(action_high), dtype=torch.float32)
        self.register_buffer("action_centre", (high + low) / 2)
        self.register_buffer("action_half_range", (high - low) / 2)

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        """Pre-squash coordinates → actions in the box."""
        return self.action_centre + torch.tanh(u) * self.action_half_range

    def normalize(self, action: torch.Tensor) -> torch.Tensor:
        """Actions in the box → [−1, 1]⁸ (the squashed coordinates)."""
        return (action - self.action_centre) / self.action_half_range

    def forward(self, latent: torch.Tensor, deterministic: bool = False) -> PolicyOutput:
        features = self.trunk(latent)
        position = self.position_head(features)
        force = self.force_head(features)
        mean = torch.cat([position[:, :7], force[:, :1]], 1)
        log_std = torch.cat([position[:, 7:], force[:, 1:]], 1).clamp(self.log_std_min, self.log_std_max)
        std = log_std.exp()
        sample = mean if deterministic else mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((sample - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(1)
        # change of variables for tanh, in the stable form log(1 − tanh²u) = 2(log 2 − u − softplus(−2u))
        log_prob = log_prob - (2 * (math.log(2) - sample - nn.functional.softplus(-2 * sample))).sum(1)
        return PolicyOutput(self.squash(sample), log_prob, mean, std)


class SharedForcePositionCritic(nn.Module):
    """Q(s, a) with position and force actions sharing one embedding (method.md §3)."""

    def __init__(self, state_dim: int, config: NetworkConfig) -> None:
        super().__init__()
        e = config.critic_embedding
        norm = config.critic_layer_norm
        self.state = _mlp([state_dim, config.critic_state_hidden, e], layer_norm=norm)
        self.position = _mlp([7, e, e], layer_norm=norm)
        self.force = _mlp([1, e, e], layer_norm=norm)
        self.head = _mlp([e, config.critic_head_hidden, config.critic_head_hidden, 1], layer_norm=norm)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        s_emb = self.state(state)
        a_emb = self.position(action[:, POSITION_DIMS]) + self.force(action[:, FORCE_DIMS])
        return self.head(s_emb - a_emb).squeeze(-1)


class ConcatCritic(nn.Module):
    """The ablation: a plain MLP on the concatenated state and action."""

    def __init__(self, state_dim: int, config: NetworkConfig) -> None:
        super().__init__()
        self.net = _mlp(
            [state_dim + ACTION_DIM, config.critic_state_hidden, config.critic_head_hidden, 1],
            layer_norm=config.critic_layer_norm,
        )

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([state, action], 1)).squeeze(-1)


def make_critic(state_dim: int, config: NetworkConfig) -> nn.Module:
    """The configured critic."""
    return (
        SharedForcePositionCritic(state_dim, config) if config.critic == "shared" else ConcatCritic(state_dim, config)
    )
