"""Expert interventions in the actors' episodes (HIL-SERL's human takeover, with the scripted expert).

When a cell's episode goes wrong, :class:`ScriptedGraspPolicy` takes it over and drives it to its
end, re-planning from where the arm is. In replay the policy's part of the episode ends at the
takeover as a terminal failure: the step that went wrong is ``terminated`` and pays ``penalty``
less (the intervention as a reward signal, as in RLIF), so the critic learns that states which
call for the expert are worth nothing more, instead of crediting them with the expert's success.
The expert's part follows as an episode of its own whose steps are marked ``intervention`` (the
learner also routes them to its demonstration share, ``orchestrator/learning.py``). The episode's
outcome is marked ``intervened``: it counts as the policy's failure wherever success is counted
for the policy (the curriculum's gate, the actors' success rate).

An episode goes wrong, for the trigger, when either

- a joint comes within ``joint_margin`` of its limit (the scripted expert stays ≥ 0.35 rad away on
  T0–T2; a collapsed policy parks the arm at a limit), or
- the arm has made no progress for ``stall_steps`` steps: the tool-centre point came no closer
  than ``stall_distance`` beyond its closest approach to the target, and the target has not been
  lifted ``lift_height`` above where it started (the expert's whole grasp takes ~50 steps).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from graspfleet.actions.config import ActionConfig
from graspfleet.config import require
from graspfleet.policies import ExpertKind, make_expert
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import ArmKinematics


@dataclasses.dataclass(frozen=True)
class InterventionConfig:
    """When the scripted expert takes over a training episode, and what its takeover costs the policy."""

    enabled: bool = False
    """Whether the scripted expert takes over episodes that go wrong."""
    joint_margin: float = 0.15
    """A joint this close to its limit (rad) triggers a takeover (the reward's barrier starts here too)."""
    stall_steps: int = 40
    """Control steps without progress that trigger a takeover."""
    stall_distance: float = 0.01
    """Progress (m): the TCP's closest approach to the target shrinking by at least this much."""
    lift_height: float = 0.02
    """A target lifted this far (m) above its starting height is progress enough: no stall."""
    penalty: float = 1.0
    """Reward taken off the policy's step that called for a takeover, which also ends the policy's
    part of the episode (terminal); the size of the cell's collision penalty, the other terminal
    failure."""
    routed_rows: int = 5_000
    """Intervention transitions the learner keeps beside its demonstrations (oldest dropped first;
    ~17 kB each with the default observation)."""

    def __post_init__(self) -> None:
        require(self.joint_margin >= 0, "interventions.joint_margin: must be >= 0 rad")
        require(self.stall_steps >= 1, "interventions.stall_steps: must be >= 1")
        require(self.stall_distance > 0, "interventions.stall_distance: must be > 0 m")
        require(self.lift_height > 0, "interventions.lift_height: must be > 0 m")
        require(self.penalty >= 0, "interventions.penalty: must be >= 0")
        require(self.routed_rows >= 1, "interventions.routed_rows: must be >= 1")


class Interventions:
    """The takeover state of N cells: which are driven by the expert, and the trigger's memory."""

    def __init__(
        self,
        config: InterventionConfig,
        cell: CellConfig,
        num_cells: int,
        action: ActionConfig | None = None,
        expert: ExpertKind = "reactive",
    ) -> None:
        """``expert``: which scripted expert takes over (:func:`~graspfleet.policies.make_expert`)."""
        self.config = config
        self.kinematics = ArmKinematics(cell)
        self.expert = make_expert(expert, cell, num_cells, action)
        self.active = np.zeros(num_cells, dtype=bool)
        """Cells whose episode the expert drives (until the episode ends)."""
        self.closest = np.full(num_cells, np.inf)
        """Each episode's closest TCP–target distance so far (m)."""
        self.since_progress = np.zeros(num_cells, dtype=np.int64)
        self.start_height = np.full(num_cells, np.nan)
        """Each episode's target height at its first step (m)."""

    def reset(self, which: np.ndarray) -> None:
        """Forget the episodes of the cells where ``which`` is true (they ended)."""
        self.active[which] = False
        self.closest[which] = np.inf
        self.since_progress[which] = 0
        self.start_height[which] = np.nan

    def triggered(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Advance the trigger one step on ``obs`` in the cells the expert does not drive; those
        whose episode went wrong (bool ``(N,)``)."""
        c = self.config
        watched = np.flatnonzero(~self.active)
        wrong = np.zeros(len(self.active), dtype=bool)
        if not watched.size:
            return wrong
        joints = obs["proprio"][watched, :6].astype(np.float64)
        target = obs["privileged"][watched, :3].astype(np.float64)
        margin = np.minimum(joints - self.kinematics.joint_low, self.kinematics.joint_high - joints).min(axis=1)
        tcp = np.stack([self.kinematics.tcp_pose(q)[:3, 3] for q in joints])
        distance = np.linalg.norm(tcp - target, axis=1)
        start = self.start_height[watched]
        start = np.where(np.isnan(start), target[:, 2], start)
        closest = self.closest[watched]
        progressed = (distance < closest - c.stall_distance) | (target[:, 2] > start + c.lift_height)
        self.start_height[watched] = start
        self.closest[watched] = np.where(progressed, np.minimum(closest, distance), closest)
        self.since_progress[watched] = np.where(progressed, 0, self.since_progress[watched] + 1)
        wrong[watched] = (margin < c.joint_margin) | (self.since_progress[watched] >= c.stall_steps)
        return wrong

    def take_over(self, which: np.ndarray) -> None:
        """The expert starts driving the cells where ``which`` is true, planning from their pose now."""
        self.expert.reset(which)
        self.active |= which
