"""The curriculum controller on synthetic outcome streams: the gate, rollbacks, anti-flapping."""

from __future__ import annotations

import dataclasses
import json

import pytest

from graspfleet.config import ConfigError
from graspfleet.interfaces import EpisodeOutcome
from learner.curriculum import CurriculumConfig, CurriculumController, CurriculumEvent, ValidationResult

CONFIG = CurriculumConfig(tiers=("T0", "T1", "T2"), gate_source="training")


def feed(controller: CurriculumController, successes: list[bool]) -> list[CurriculumEvent]:
    """Episodes of the controller's current generation; the events they caused."""
    events = []
    for success in successes:
        generation = controller.generation
        event = controller.record_episode(EpisodeOutcome(generation, success))
        if event is not None:
            events.append(event)
    return events


def validation(
    controller: CurriculumController, success: float, collision: float = 0.0, episodes: int = 10**9
) -> CurriculumEvent | None:
    """A validation of the current generation (by default so many episodes that the rates are exact
    to 1e-4, which puts the thresholds themselves under test)."""
    return controller.record_validation(ValidationResult(controller.generation, episodes, success, collision))


def test_the_double_80_gate_promotes_at_exactly_64_of_80_consecutive_episodes() -> None:
    controller = CurriculumController(CONFIG, "T0")
    assert controller.gate_required == 64
    assert feed(controller, [True] * 63 + [False] * 17) == []  # a full window, one success short
    assert controller.tier == "T0"
    # the window slides: the next success pushes out a success, the one after pushes out a failure …
    assert feed(controller, [True] * 63) == []
    (event,) = feed(controller, [True])
    assert (event.kind, event.from_tier, event.to_tier) == ("promotion", "T0", "T1")
    assert event.metrics == {"gate_success_rate": 64 / 80, "gate_episodes": 80}
    assert (event.lr_scale_before, event.lr_scale_after) == (1.0, 0.5)
    assert controller.tier == "T1" and controller.generation == 1 and controller.promotions == 1
    assert len(controller.window) == 0  # the gate starts over on the new tier


def test_a_window_not_yet_full_never_promotes_even_when_every_episode_succeeds() -> None:
    controller = CurriculumController(CONFIG, "T0")
    assert feed(controller, [True] * 79) == []
    assert controller.tier == "T0"
    assert [e.kind for e in feed(controller, [True])] == ["promotion"]


def test_the_last_tier_is_never_left_upwards() -> None:
    controller = CurriculumController(CONFIG, "T2")
    assert feed(controller, [True] * 200) == []
    assert controller.tier == "T2" and controller.promotions == 0


def test_stale_episodes_from_before_a_tier_change_never_count_towards_the_gate() -> None:
    controller = CurriculumController(CONFIG, "T0")
    feed(controller, [True] * 80)
    assert controller.tier == "T1"
    # actors still running generation 0 finish their successful T0 episodes
    for _ in range(200):
        assert controller.record_episode(EpisodeOutcome(0, True)) is None
    assert controller.tier == "T1" and controller.stale == 200 and len(controller.window) == 0


def test_validation_success_drop_of_more_than_10_percent_relative_rolls_back() -> None:
    controller = CurriculumController(CONFIG, "T0")
    feed(controller, [True] * 80)
    assert validation(controller, 0.5) is None  # the first validation sets the reference
    assert validation(controller, 0.45) is None  # exactly 10 % below: not more than 10 %
    assert validation(controller, 0.6) is None  # better: the new reference
    assert validation(controller, 0.55) is None
    event = validation(controller, 0.539)  # 10.2 % below 0.6
    assert event is not None and (event.kind, event.from_tier, event.to_tier) == ("rollback", "T1", "T0")
    assert event.metrics["reference_success_rate"] == 0.6 and event.metrics["validation_success_rate"] == 0.539
    assert (event.lr_scale_before, event.lr_scale_after) == (0.5, 0.25)  # cut further after the halving
    assert controller.tier == "T0" and controller.generation == 2 and controller.rollbacks == 1
    assert controller.reference is None


def test_a_collision_rise_rolls_back_only_when_relatively_and_absolutely_large_enough() -> None:
    controller = CurriculumController(CONFIG, "T1")
    assert validation(controller, 0.8, collision=0.10) is None
    assert validation(controller, 0.8, collision=0.12) is None  # exactly +20 %: not more than 20 %
    event = validation(controller, 0.8, collision=0.125)
    assert event is not None and event.kind == "rollback"
    assert event.metrics["reference_collision_rate"] == 0.10

    controller = CurriculumController(CONFIG, "T1")
    assert validation(controller, 0.8, collision=0.0) is None
    assert validation(controller, 0.8, collision=0.01) is None  # infinitely more, but one episode in 100
    assert validation(controller, 0.8, collision=0.021) is not None


def test_a_drop_within_sampling_noise_does_not_roll_back() -> None:
    controller = CurriculumController(CONFIG, "T1")
    assert validation(controller, 0.6, episodes=50) is None
    # 25 of 50 after 30 of 50: 17 % lower, but the 95 % interval of 25/50 reaches 0.63
    assert validation(controller, 0.5, episodes=50) is None
    assert validation(controller, 0.3, episodes=50) is not None  # [0.19, 0.44]: a real drop
    careless = CurriculumController(dataclasses.replace(CONFIG, rollback_confidence=0.0), "T1")
    validation(careless, 0.6, episodes=50)
    assert validation(careless, 0.5, episodes=50) is not None  # the point estimate alone


def test_on_the_first_tier_a_regression_is_reported_and_changes_nothing() -> None:
    controller = CurriculumController(CONFIG, "T0")
    validation(controller, 0.9)
    event = validation(controller, 0.5)
    assert event is not None and event.kind == "regression" and event.to_tier == "T0"
    assert controller.tier == "T0" and controller.generation == 0 and controller.lr_scale == 1.0


def test_after_a_rollback_promotion_needs_a_fresh_full_window_and_stale_validations_are_ignored() -> None:
    controller = CurriculumController(CONFIG, "T0")
    feed(controller, [True] * 80)
    validation(controller, 0.8)
    assert validation(controller, 0.5) is not None  # rolled back to T0, generation 2
    # validations and episodes of the rolled-back generation (1) arrive late: all ignored
    assert controller.record_validation(ValidationResult(1, 100, 0.1, 0.9)) is None
    assert controller.record_episode(EpisodeOutcome(1, True)) is None
    assert controller.tier == "T0" and controller.stale == 2
    assert feed(controller, [True] * 79) == []
    assert [e.kind for e in feed(controller, [True])] == ["promotion"]
    assert controller.generation == 3 and controller.lr_scale == 0.125


def test_a_gate_fed_by_validations_counts_their_episodes_and_ignores_training_episodes() -> None:
    controller = CurriculumController(dataclasses.replace(CONFIG, gate_source="validation"), "T0")
    assert feed(controller, [True] * 200) == []  # the actors' episodes do not count
    assert len(controller.window) == 0
    # 50 episodes at 82 %: 41 successes, spread so that any 30 consecutive hold 24 or 25
    assert validation(controller, 0.82, episodes=50) is None
    window = list(controller.window)
    assert len(window) == 50 and sum(window) == 41
    assert all(24 <= sum(window[i : i + 30]) <= 25 for i in range(21))
    # the next validation fills the window: its 50 at 80 % plus the last 30 of the first pass
    (event,) = [e for e in [validation(controller, 0.8, episodes=50)] if e is not None]
    assert (event.kind, event.to_tier) == ("promotion", "T1")
    assert event.metrics["gate_episodes"] == 80 and event.metrics["gate_success_rate"] >= 0.8


def test_a_validation_that_rolls_back_never_counts_towards_the_gate() -> None:
    controller = CurriculumController(dataclasses.replace(CONFIG, gate_source="validation"), "T1")
    assert validation(controller, 0.95, episodes=50) is None  # the reference, 48 of 50 in the window
    event = validation(controller, 0.30, episodes=50)
    assert event is not None and event.kind == "rollback"
    assert controller.tier == "T0" and len(controller.window) == 0
    assert validation(controller, 0.7, episodes=100) is None  # 56 of 80: short of 64
    assert sum(controller.window) == 56


def test_the_learning_rate_scale_has_a_floor() -> None:
    controller = CurriculumController(dataclasses.replace(CONFIG, min_lr_scale=0.2), "T0")
    for _ in range(3):
        feed(controller, [True] * 80)
        validation(controller, 0.9)
        validation(controller, 0.1)
    assert controller.lr_scale == pytest.approx(0.2)


def test_kl_weight_is_zero_on_the_first_tier_and_decays_per_tier() -> None:
    controller = CurriculumController(dataclasses.replace(CONFIG, kl_weight=2.0, kl_decay=0.5), "T0")
    weights = [controller.kl_weight()]
    for _ in range(2):
        feed(controller, [True] * 80)
        weights.append(controller.kl_weight())
    assert weights == [0.0, 2.0, 1.0]


def test_state_round_trips_through_json_mid_gate() -> None:
    controller = CurriculumController(CONFIG, "T0")
    feed(controller, [True] * 80 + [True, False, True])
    validation(controller, 0.7, 0.05)
    saved = json.loads(json.dumps(controller.state_dict()))
    restored = CurriculumController(CONFIG, "T0")
    restored.load_state_dict(saved)
    assert restored.state_dict() == controller.state_dict()
    assert feed(restored, [True] * 76) == [] and feed(controller, [True] * 76) == []
    assert [e.kind for e in feed(restored, [True])] == [e.kind for e in feed(controller, [True])] == ["promotion"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tiers": ("T0", "T9")}, "unknown tier 'T9'"),
        ({"tiers": ("T0", "T0")}, "named twice"),
        ({"gate_success": 0.0}, "gate_success"),
        ({"gate_source": "evaluation"}, "gate_source: expected training or validation"),
        ({"promotion_lr_factor": 1.5}, "promotion_lr_factor"),
    ],
)
def test_bad_config_names_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CurriculumConfig(**overrides)  # type: ignore[arg-type]


def test_a_start_tier_off_the_ladder_is_refused() -> None:
    with pytest.raises(ConfigError, match="start tier 'T3'"):
        CurriculumController(CONFIG, "T3")
