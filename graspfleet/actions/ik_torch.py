"""Differentiable arm kinematics and damped-least-squares IK in PyTorch, for the learner.

The chain is the grasp cell's :class:`~graspfleet.sim.kinematics.ArmChain`, read from its MuJoCo
model, so it is the same arm the actors drive. Everything is batched and differentiable, so a loss
can back-propagate through IK and through :meth:`TorchArmKinematics.reachability_penalty` to teach
the policy to avoid unreachable or near-singular regions (method.md §5, layer 2):
:meth:`TorchArmKinematics.command_penalty` takes a Cartesian command the way the action pipeline
does (target ``Exp(ξ) ∘ T_current`` through the conditioned Exp, DLS IK from the measured joints)
and is what the SAC actor's loss adds with ``sac.reachability_weight``.
"""

from __future__ import annotations

import numpy as np
import torch

from graspfleet.actions.config import ActionConfig
from graspfleet.geometry import se3_torch as lie
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import ArmChain


class TorchArmKinematics:
    """Forward kinematics, geometric Jacobian and DLS IK of the arm, batched in PyTorch."""

    def __init__(
        self, cell: CellConfig, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"
    ) -> None:
        chain = ArmChain.from_cell(cell)

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

        self.root = tensor(chain.root)
        self.offsets = tensor(chain.offsets)
        self.axes = tensor(chain.axes)
        self.anchors = tensor(chain.anchors)
        self.tcp_offset = tensor(chain.tcp)
        self.joint_low = tensor(chain.joint_low)
        self.joint_high = tensor(chain.joint_high)
        self.dtype = dtype

    def frames(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """World joint axes ``(B, 6, 3)``, joint anchors ``(B, 6, 3)`` and the TCP pose ``(B, 4, 4)``."""
        batch = q.shape[:-1]
        pose = self.root.expand(*batch, 4, 4)
        axes, anchors = [], []
        for j in range(q.shape[-1]):
            pose = pose @ self.offsets[j]
            anchor = pose[..., :3, :3] @ self.anchors[j] + pose[..., :3, 3]
            axis = pose[..., :3, :3] @ self.axes[j]
            axes.append(axis)
            anchors.append(anchor)
            local = torch.zeros(*batch, 4, 4, dtype=q.dtype, device=q.device)
            rotation = lie.so3_exp(self.axes[j] * q[..., j, None])
            local[..., :3, :3] = rotation
            local[..., :3, 3] = self.anchors[j] - rotation @ self.anchors[j]
            local[..., 3, 3] = 1.0
            pose = pose @ local
        return torch.stack(axes, -2), torch.stack(anchors, -2), pose @ self.tcp_offset

    def tcp_pose(self, q: torch.Tensor) -> torch.Tensor:
        """TCP poses ``(B, 4, 4)`` at joint angles ``q`` ``(B, 6)`` (rad)."""
        return self.frames(q)[2]

    def jacobian(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """TCP pose and geometric Jacobian ``(B, 6, 6)``: rows ``z × (p_tcp − p_j)`` then ``z``."""
        axes, anchors, pose = self.frames(q)
        linear = torch.linalg.cross(axes, pose[..., None, :3, 3] - anchors, dim=-1)
        return pose, torch.cat([linear, axes], -1).transpose(-1, -2)

    def solve(
        self,
        target: torch.Tensor,
        q_init: torch.Tensor,
        iterations: int = 5,
        damping: float = 0.05,
        rotation_weight: float = 0.3,
    ) -> torch.Tensor:
        """Differentiable DLS IK: ``q ← q + Jᵀ(JJᵀ + λ²I)⁻¹ W e`` from ``q_init`` towards ``target``.

        Unconstrained (like the actor's raw proposal); differentiable w.r.t. ``target`` and ``q_init``.
        """
        weights = torch.tensor(
            [1, 1, 1, rotation_weight, rotation_weight, rotation_weight], dtype=q_init.dtype, device=q_init.device
        )
        eye = torch.eye(6, dtype=q_init.dtype, device=q_init.device)
        q = q_init
        for _ in range(iterations):
            pose, jac = self.jacobian(q)
            error = (
                torch.cat(
                    [
                        target[..., :3, 3] - pose[..., :3, 3],
                        lie.so3_log(target[..., :3, :3] @ pose[..., :3, :3].transpose(-1, -2)),
                    ],
                    -1,
                )
                * weights
            )
            wjac = jac * weights[:, None]
            step = wjac.transpose(-1, -2) @ torch.linalg.solve(
                wjac @ wjac.transpose(-1, -2) + damping**2 * eye, error[..., None]
            )
            q = q + step[..., 0]
        return q

    def reachability_penalty(self, q: torch.Tensor, config: ActionConfig) -> torch.Tensor:
        """Per-sample penalty ≥ 0, zero where the action pipeline would pass the command: how far
        σ_min(J) is below its threshold, plus how far the TCP is outside the workspace (m) and the
        joints outside their limits (rad)."""
        pose, jac = self.jacobian(q)
        sigma_min = torch.linalg.svdvals(jac)[..., -1]
        p = pose[..., :3, 3]
        low = torch.tensor(
            [config.workspace_x.low, config.workspace_y.low, config.workspace_z.low], dtype=q.dtype, device=q.device
        )
        high = torch.tensor(
            [config.workspace_x.high, config.workspace_y.high, config.workspace_z.high], dtype=q.dtype, device=q.device
        )
        outside = torch.relu(low - p) + torch.relu(p - high)
        beyond = torch.relu(self.joint_low - q) + torch.relu(q - self.joint_high)
        return torch.relu(config.min_singular_value - sigma_min) + outside.sum(-1) + beyond.sum(-1)

    def command_penalty(self, q: torch.Tensor, twist: torch.Tensor, config: ActionConfig) -> torch.Tensor:
        """Per-sample :meth:`reachability_penalty` of the IK proposal for the TCP twist ``twist``
        ``(B, 6)`` (ρ in m, ω in rad per step, in a frame at the TCP with world axes) from joints
        ``q`` ``(B, 6)`` (rad), as the action pipeline computes it: target ``Exp(ξ) ∘ T(q)``, then
        ``config.ik_iterations`` DLS iterations from ``q``. Differentiable w.r.t. ``twist`` (through
        the conditioned Exp); zero where the proposal is inside the joint limits and the workspace
        and away from singularities."""
        q = q.to(self.dtype)
        with torch.no_grad():
            current = self.tcp_pose(q)
        target = lie.apply_twist_at_point(lie.conditioned_exp(twist.to(self.dtype)), current)
        proposal = self.solve(target, q, config.ik_iterations, config.ik_damping, config.ik_rotation_weight)
        return self.reachability_penalty(proposal, config)
