"""The named difficulty tiers T0–T4 of the grasp curriculum (method.md §4).

Only the environment config changes between tiers; the curriculum keeps network weights
and the replay buffer. Tiers can be overridden from YAML like any other config.
"""

from __future__ import annotations

import math

from graspfleet.config import ConfigError, Range
from graspfleet.sim.config import COLOURS, SHAPES, TierConfig
from graspfleet.sim.randomization import DomainRandomization

_WIDE = DomainRandomization(
    object_mass=Range(0.08, 0.5),
    object_com_offset=Range(-0.01, 0.01),
    object_friction=Range(0.7, 1.3),
    joint_damping=Range(1.5, 3.0),
    actuator_gain_scale=Range(0.9, 1.1),
    backlash=Range(0.0, 0.005),
    sensor_noise_scale=Range(0.5, 1.5),
    object_hue_jitter=Range(-0.03, 0.03),
    object_saturation_scale=Range(0.8, 1.0),
    object_value_scale=Range(0.75, 1.0),
    light_hue=Range(0.05, 0.2),
    light_saturation=Range(0.0, 0.15),
    light_value=Range(0.75, 1.0),
    camera_position_jitter=Range(-0.01, 0.01),
    camera_rotation_jitter=Range(-0.02, 0.02),
)

_HEAVY = DomainRandomization(
    object_mass=Range(0.05, 0.8),
    object_com_offset=Range(-0.015, 0.015),
    object_friction=Range(0.5, 1.5),
    joint_damping=Range(1.0, 4.0),
    actuator_gain_scale=Range(0.8, 1.2),
    backlash=Range(0.0, 0.01),
    sensor_noise_scale=Range(0.5, 2.0),
    object_hue_jitter=Range(-0.04, 0.04),
    object_saturation_scale=Range(0.7, 1.0),
    object_value_scale=Range(0.6, 1.0),
    light_hue=Range(0.0, 1.0),
    light_saturation=Range(0.0, 0.3),
    light_value=Range(0.5, 1.0),
    camera_position_jitter=Range(-0.02, 0.02),
    camera_rotation_jitter=Range(-0.04, 0.04),
)

TIERS: dict[str, TierConfig] = {
    "T0": TierConfig(
        name="T0",
        description="a single red cube near the table centre",
    ),
    "T1": TierConfig(
        name="T1",
        description="a single cube at a random position and yaw",
        spawn_x=Range(-0.12, 0.12),
        spawn_y=Range(-0.15, 0.15),
        spawn_yaw=Range(-math.pi, math.pi),
        colours=tuple(COLOURS),
    ),
    "T2": TierConfig(
        name="T2",
        description="varied shapes, sizes and masses",
        shapes=SHAPES,
        colours=tuple(COLOURS),
        object_half_size=Range(0.018, 0.035),
        spawn_x=Range(-0.12, 0.12),
        spawn_y=Range(-0.15, 0.15),
        spawn_yaw=Range(-math.pi, math.pi),
        randomization=_WIDE,
    ),
    "T3": TierConfig(
        name="T3",
        description="clutter: the instruction picks the target among distractors",
        num_objects=4,
        shapes=SHAPES,
        colours=tuple(COLOURS),
        object_half_size=Range(0.018, 0.032),
        spawn_x=Range(-0.15, 0.15),
        spawn_y=Range(-0.18, 0.18),
        spawn_yaw=Range(-math.pi, math.pi),
        randomization=_WIDE,
    ),
    "T4": TierConfig(
        name="T4",
        description="clutter with camera occlusion and modality dropout under heavy randomization",
        num_objects=4,
        shapes=SHAPES,
        colours=tuple(COLOURS),
        object_half_size=Range(0.018, 0.032),
        spawn_x=Range(-0.15, 0.15),
        spawn_y=Range(-0.18, 0.18),
        spawn_yaw=Range(-math.pi, math.pi),
        occlusion_start_probability=0.05,
        occlusion_steps=10,
        modality_dropout=0.3,
        randomization=_HEAVY,
    ),
}
"""Tier name → config, in curriculum order."""

TIER_ORDER: tuple[str, ...] = tuple(TIERS)


def get_tier(name: str) -> TierConfig:
    """The named tier's config; raises ConfigError listing the known tiers."""
    try:
        return TIERS[name]
    except KeyError:
        raise ConfigError(f"unknown tier {name!r} (known: {', '.join(TIER_ORDER)})") from None
