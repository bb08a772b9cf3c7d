"""Expert interventions: the trigger, the takeover in a real actor, the marking in replay, and the
learner's routing of intervention rows to its demonstrations."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from actors.intervention import InterventionConfig, Interventions
from actors.sim_actor import SimActor
from actors.trajectory import grasp_signature
from graspfleet.actions.cartesian import cartesian_action_bounds
from graspfleet.actions.config import ActionConfig
from graspfleet.config import ConfigError
from graspfleet.interfaces import EpisodeOutcome
from graspfleet.policies import ExpertKind
from graspfleet.sim.config import CellConfig
from graspfleet.sim.kinematics import ArmKinematics
from graspfleet.spec import observation_spec
from graspfleet.weights import serialize
from learner.curriculum import CurriculumConfig, CurriculumController
from learner.sac import SACLearner
from orchestrator.learning import DemonstrationBatches, TransitionRing
from replay.config import ShardConfig
from replay.local import TableSink
from replay.table import ReplayTable, SampleResult
from tests.helpers import small_train_config

CELL = CellConfig()


def _obs(joints: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """The two observation arrays the trigger reads, for cells at ``joints`` with targets at ``target``."""
    n = len(joints)
    proprio = np.zeros((n, 14), np.float32)
    proprio[:, :6] = joints
    privileged = np.zeros((n, 9), np.float32)
    privileged[:, :3] = target
    return {"proprio": proprio, "privileged": privileged}


def test_a_joint_near_its_limit_triggers_at_once_and_a_taken_over_cell_does_not_trigger_again() -> None:
    config = InterventionConfig(enabled=True)
    trigger = Interventions(config, CELL, 2)
    high = trigger.kinematics.joint_high
    joints = np.zeros((2, 6))
    joints[1, 2] = high[2] - 0.5 * config.joint_margin
    target = np.tile([0.5, 0.0, 0.05], (2, 1))
    assert trigger.triggered(_obs(joints, target)).tolist() == [False, True]
    trigger.take_over(np.array([False, True]))
    assert trigger.triggered(_obs(joints, target)).tolist() == [False, False]
    trigger.reset(np.array([False, True]))
    assert not trigger.active.any()
    assert trigger.triggered(_obs(joints, target)).tolist() == [False, True]


def test_a_stall_triggers_after_stall_steps_and_progress_or_a_lift_holds_it_off() -> None:
    config = InterventionConfig(enabled=True, stall_steps=5)
    trigger = Interventions(config, CELL, 3)
    tcp = ArmKinematics(CELL).tcp_pose(np.zeros(6))[:3, 3]
    joints = np.zeros((3, 6))
    target = np.tile(tcp + np.array([0.3, 0.0, -0.2]), (3, 1))
    fired = []
    for step in range(12):
        now = target.copy()
        now[1] -= (0.3 / 12) * step * np.array([1.0, 0.0, 0.0])  # cell 1: the target comes to the TCP
        now[2] = tcp + np.array([0.3, 0.0, 0.0035 * step])  # cell 2: level with the TCP, rising 3.5 mm a step
        fired.append(trigger.triggered(_obs(joints, now)))
    fired = np.array(fired)
    # cell 0: no progress after its first step, so the fifth step without it fires
    assert fired[:, 0].tolist() == [False] * 5 + [True] * 7
    assert not fired[:, 1].any()  # 2.5 cm closer every step
    # cell 2: stalls like cell 0 until its target is more than 2 cm above where it started (step 6: 2.1 cm)
    assert fired[:, 2].tolist() == [False] * 5 + [True] + [False] * 6


def test_the_config_refuses_nonsense_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match=r"interventions\.stall_steps"):
        InterventionConfig(stall_steps=0)
    with pytest.raises(ConfigError, match=r"interventions\.joint_margin"):
        InterventionConfig(joint_margin=-0.1)


class _Weights:
    """Version 0 of an untrained policy (it does not grasp: every episode stalls)."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        learner = SACLearner(observation_spec(CELL), cartesian_action_bounds(CELL, ActionConfig()), device="cpu")
        self.blob = serialize(learner.policy_tensors(), version=0)

    def latest_version(self) -> int:
        return 0

    def fetch_weights(self, version: int | None = None) -> tuple[int, bytes] | None:
        return 0, self.blob


class _RecordingSink:
    """A cell's sink that keeps what it was given: ("step", step) and ("end", final observation)."""

    def __init__(self) -> None:
        self.tier = 0
        self.policy_version = 0
        self.events: list[tuple[str, dict[str, Any]]] = []

    def append(self, step: dict[str, Any]) -> None:
        self.events.append(("step", step))

    def end_episode(self, final_observation: dict[str, Any]) -> None:
        self.events.append(("end", final_observation))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass


def _segments(events: list[tuple[str, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The closed episodes a sink was given, as lists of steps (each ``end`` closes one)."""
    segments, steps = [], []
    for kind, item in events:
        if kind == "step":
            steps.append(item)
        else:
            assert steps, "an episode was closed with no step in it"
            segments.append(steps)
            steps = []
    return segments


@pytest.mark.parametrize("expert", ["waypoint", "reactive"])
def test_a_takeover_ends_the_policys_part_as_a_penalized_failure_and_the_experts_part_is_marked(
    expert: ExpertKind,
) -> None:
    config = InterventionConfig(enabled=True, stall_steps=20, penalty=1.5)
    sinks: list[_RecordingSink] = []

    def sink(name: str) -> _RecordingSink:
        sinks.append(_RecordingSink())
        return sinks[-1]

    actor = SimActor("a", CELL, "T0", 4, sink, _Weights(), seed=0, interventions=config, expert=expert)
    actor.run(200)
    outcomes = actor.take_outcomes()
    stats = actor.stats
    # the untrained policy never grasps alone: every episode stalls and is taken over
    assert outcomes and all(o.intervened for o in outcomes)
    assert sum(o.success for o in outcomes) >= len(outcomes) // 2  # the expert recovers most of them
    assert stats.policy_successes == sum(o.policy_success for o in outcomes) == 0
    assert stats.interventions >= len(outcomes) and stats.intervention_steps > 0
    low, high = cartesian_action_bounds(CELL, ActionConfig())
    policy_parts = expert_parts = 0
    for recorded in sinks:
        for segment in _segments(recorded.events):
            marked = {bool(step["intervention"]) for step in segment}
            assert len(marked) == 1  # a segment is the policy's or the expert's, never both
            if marked == {False}:  # the policy's part: it ends at the takeover, terminal and penalized
                policy_parts += 1
                assert segment[-1]["terminated"] and not any(step["terminated"] for step in segment[:-1])
                assert len(segment) >= config.stall_steps
            else:  # the expert's part: its actions inside the action box
                expert_parts += 1
                actions = np.stack([step["action"] for step in segment])
                assert (actions >= low - 1e-6).all() and (actions <= high + 1e-6).all()
    assert policy_parts >= len(outcomes) and expert_parts >= len(outcomes)


def _policy_parts_last_rewards(penalty: float) -> list[float]:
    sinks: list[_RecordingSink] = []

    def sink(name: str) -> _RecordingSink:
        sinks.append(_RecordingSink())
        return sinks[-1]

    config = InterventionConfig(enabled=True, stall_steps=20, penalty=penalty)
    SimActor("a", CELL, "T0", 2, sink, _Weights(), seed=3, interventions=config).run(60)
    return [seg[-1]["reward"] for r in sinks for seg in _segments(r.events) if not seg[0]["intervention"]]


def test_the_step_that_calls_for_the_expert_pays_the_penalty() -> None:
    free, penalized = _policy_parts_last_rewards(0.0), _policy_parts_last_rewards(2.0)
    assert len(free) == len(penalized) >= 2  # the same seeded episodes, taken over at the same steps
    np.testing.assert_allclose(np.subtract(free, penalized), 2.0, atol=1e-5)


def test_without_interventions_nobody_takes_over_and_nothing_is_marked() -> None:
    table = ReplayTable(grasp_signature(), ShardConfig(capacity=20_000, min_size_to_sample=1))
    plain = SimActor("b", CELL, "T0", 4, lambda name: TableSink(table, name, 16), _Weights(), seed=0)
    plain.run(60)
    assert plain.stats.interventions == 0 and not table.sample(500).columns["intervention"].any()


def test_the_training_gate_counts_an_intervened_success_as_a_failure() -> None:
    controller = CurriculumController(
        CurriculumConfig(gate_source="training", gate_episodes=10, tiers=("T0", "T1")), start_tier="T0"
    )
    for _ in range(10):
        assert controller.record_episode(EpisodeOutcome(0, True, "T0", intervened=True)) is None
    assert controller.gate_successes == 0
    # the policy's own successes count: 8 of 10 (the double-80 share) promote
    events = [controller.record_episode(EpisodeOutcome(0, True, "T0")) for _ in range(8)]
    assert events[:-1] == [None] * 7 and events[-1] is not None and events[-1].kind == "promotion"


def _sample(shard: str, keys: list[int], intervention: list[bool], tier: int = 0) -> SampleResult:
    n = len(keys)
    spec = observation_spec(CELL)
    columns: dict[str, np.ndarray] = {}
    for name, s in spec.items():
        columns[name] = np.full((n, *s.shape), 0, s.dtype)
        columns[f"next_{name}"] = np.full((n, *s.shape), 0, s.dtype)
    columns["action"] = np.tile(np.arange(n, dtype=np.float32)[:, None], (1, 8))  # row i's action is i
    columns["reward"] = np.arange(n, dtype=np.float32)
    columns["terminated"] = np.zeros(n, bool)
    columns["truncated"] = np.zeros(n, bool)
    columns["intervention"] = np.asarray(intervention)
    return SampleResult(
        columns,
        np.asarray(keys, np.uint64),
        np.ones(n),
        np.ones(n, np.float32),
        np.full(n, tier, np.int32),
        np.zeros(n, np.int64),
        shard=shard,
    )


def test_a_transition_ring_keeps_each_row_once_and_drops_the_oldest() -> None:
    ring = TransitionRing(capacity=3, seed=0)
    sample = _sample("a", [1, 2, 3, 4], [True] * 4)
    assert ring.add(sample, np.array([0, 1])) == 2
    assert ring.add(sample, np.array([0, 1])) == 0  # the same rows again
    assert ring.add(_sample("a", [9, 9], [True, True]), np.array([0, 1])) == 1  # one row drawn twice
    assert ring.add(_sample("b", [1], [True]), np.array([0])) == 1  # the same key on another shard (over a's key 1)
    assert ring.add(sample, np.array([2, 3])) == 2  # over the two oldest left: a's keys 2 and 9
    assert ring.size == 3 and ring.added == 6
    assert ring.add(sample, np.array([0])) == 1  # key 1 of shard a was dropped, so it is new again
    drawn = ring.sample(200)
    assert set(drawn["reward"].tolist()) == {0.0, 2.0, 3.0}  # the last three added: a's rows 2, 3, 0
    assert drawn["horizon"].tolist() == [1] * 200


def test_demonstration_batches_route_the_current_tiers_intervention_rows_and_mix_them_in() -> None:
    config = small_train_config(interventions={"enabled": True, "routed_rows": 1_000}, learning={"batch_size": 64})
    demos = DemonstrationBatches(config, torch.device("cpu"))
    assert demos.rows > 0 and demos.size == 32
    # 3 of 5 rows marked; one of the marked is from another tier
    routed = demos.route(_sample("s", [10, 11, 12, 13, 14], [True, False, True, True, False]))
    assert routed == 3 and demos.routed_rows == 3
    assert demos.route(_sample("s", [20], [True], tier=1)) == 0
    # routed rows are drawn in proportion to the rows held: 3 routed against the demonstrations'
    held = demos.routed.size  # type: ignore[union-attr]
    share = held / (held + demos.rows)
    draws = routed_drawn = 0
    for _ in range(200):
        batch = demos.sample()
        assert batch is not None and len(batch.reward) == demos.size
        action = batch.action.numpy()
        routed_rows = (action == action[:, :1]).all(axis=1)  # a routed row's action is 8 equal numbers
        assert set(action[routed_rows, 0].tolist()) <= {0.0, 2.0, 3.0}
        draws += len(action)
        routed_drawn += int(routed_rows.sum())
    expected = draws * share
    assert abs(routed_drawn - expected) < 4 * np.sqrt(expected * (1 - share))
    # a tier switch starts the routed rows afresh
    demos.switch_tier("T1")
    assert demos.routed is not None and demos.routed.size == 0
