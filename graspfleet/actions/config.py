"""Configuration of the action pipeline: step bounds, IK, reachability, the safe-action cache."""

from __future__ import annotations

import dataclasses
import math

from graspfleet.config import Range, require


@dataclasses.dataclass(frozen=True)
class ActionConfig:
    """How a Cartesian policy output becomes a joint command (method.md §5).

    Units: metres, radians, per control step unless stated.
    """

    max_translation_step: float = 0.03
    """Largest TCP translation one command may ask for (m per control step)."""
    max_rotation_step: float = 0.25
    """Largest TCP rotation one command may ask for (rad per control step)."""
    max_joint_step: float = 0.15
    """Largest change of any joint target per control step (rad): the joint-increment scale."""
    ik_iterations: int = 5
    """Damped-least-squares IK iterations (seed: ~5)."""
    ik_damping: float = 0.05
    """λ of the damped pseudo-inverse ``Jᵀ(JJᵀ + λ²I)⁻¹``."""
    ik_rotation_weight: float = 0.3
    """Weight of the rotation error (rad) against the position error (m) in IK."""
    min_singular_value: float = 0.08
    """method.md §5: a commanded pose passes only if σ_min of the 6×6 TCP Jacobian exceeds this."""
    workspace_x: Range = Range(-0.35, 0.35)
    workspace_y: Range = Range(-0.4, 0.4)
    workspace_z: Range = Range(0.015, 0.6)
    """The TCP of every command must lie in this box (m, world frame; the table top is z = 0)."""
    limit_margin: float = 0.02
    """The safe-action cache holds when the next cycle, extrapolated, would come this close to a
    joint limit (rad)."""
    slowdown_factor: float = 0.5
    """After a hold, joint steps are scaled by this factor (the PLC slow-down)…"""
    slowdown_cycles: int = 5
    """…for this many control steps."""

    def __post_init__(self) -> None:
        require(self.max_translation_step > 0, "action.max_translation_step: must be > 0 m")
        require(0 < self.max_rotation_step <= math.pi, "action.max_rotation_step: must be in (0, π] rad")
        require(self.max_joint_step > 0, "action.max_joint_step: must be > 0 rad")
        require(self.ik_iterations >= 1, "action.ik_iterations: must be >= 1")
        require(self.ik_damping > 0, "action.ik_damping: must be > 0")
        require(self.ik_rotation_weight >= 0, "action.ik_rotation_weight: must be >= 0")
        require(self.min_singular_value >= 0, "action.min_singular_value: must be >= 0")
        require(self.limit_margin >= 0, "action.limit_margin: must be >= 0 rad")
        require(0 < self.slowdown_factor <= 1, "action.slowdown_factor: must be in (0, 1]")
        require(self.slowdown_cycles >= 0, "action.slowdown_cycles: must be >= 0")
