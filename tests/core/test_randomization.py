"""Domain randomization: ranges, the θ vector, and sampling that stays in range and repeats by seed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graspfleet.config import ConfigError, Range
from graspfleet.sim.randomization import DomainRandomization, hsv_to_rgb
from graspfleet.sim.tiers import TIERS


def test_theta_round_trip_and_names() -> None:
    dr = TIERS["T4"].randomization
    theta = dr.theta()
    assert theta.shape == (2 * len(DomainRandomization.parameter_names()),)
    assert DomainRandomization.from_theta(theta) == dr
    assert DomainRandomization.theta_names()[:2] == ("object_mass.low", "object_mass.high")


def test_from_theta_refuses_bad_vectors() -> None:
    theta = DomainRandomization().theta()
    with pytest.raises(ConfigError, match="expected shape"):
        DomainRandomization.from_theta(theta[:-1])
    flipped = theta.copy()
    flipped[0], flipped[1] = 0.5, 0.1
    with pytest.raises(ConfigError, match=r"theta\[object_mass\]: empty range"):
        DomainRandomization.from_theta(flipped)


def test_physical_magnitudes_cannot_go_negative() -> None:
    with pytest.raises(ConfigError, match="object_friction: must be >= 0"):
        DomainRandomization(object_friction=Range(-0.1, 1.0))
    with pytest.raises(ConfigError, match="object_mass: must be > 0"):
        DomainRandomization(object_mass=Range(0.0, 1.0))


@st.composite
def randomizations(draw: st.DrawFn) -> DomainRandomization:
    kwargs = {}
    for name in DomainRandomization.parameter_names():
        low = draw(st.floats(0.01, 2.0))
        width = draw(st.floats(0.0, 2.0))
        kwargs[name] = Range(low, low + width)
    return DomainRandomization(**kwargs)


@settings(max_examples=60, deadline=None)
@given(dr=randomizations(), seed=st.integers(0, 2**32 - 1))
def test_samples_stay_inside_their_ranges(dr: DomainRandomization, seed: int) -> None:
    sample = dr.sample(np.random.default_rng(seed))
    assert dr.object_mass.contains(sample.object_mass)
    assert dr.object_com_offset.contains(sample.object_com_offset)
    assert dr.object_friction.contains(sample.object_friction)
    assert dr.joint_damping.contains(sample.joint_damping)
    assert dr.actuator_gain_scale.contains(sample.actuator_gain_scale)
    assert dr.backlash.contains(sample.backlash)
    assert dr.sensor_noise_scale.contains(sample.sensor_noise_scale)
    assert dr.camera_position_jitter.contains(sample.camera_position_jitter)
    assert dr.camera_rotation_jitter.contains(sample.camera_rotation_jitter)
    assert dr.light_saturation.contains(sample.light_hsv[1])
    assert dr.light_value.contains(sample.light_hsv[2])


def test_same_seed_same_sample_different_seed_different_sample() -> None:
    dr = TIERS["T4"].randomization
    a = dr.sample(np.random.default_rng(7))
    b = dr.sample(np.random.default_rng(7))
    c = dr.sample(np.random.default_rng(8))
    assert a.object_mass == b.object_mass and np.array_equal(a.camera_position_jitter, b.camera_position_jitter)
    assert a.object_mass != c.object_mass


def test_hsv_to_rgb_primaries() -> None:
    np.testing.assert_allclose(hsv_to_rgb(np.array([0.0, 1.0, 1.0])), [1, 0, 0], atol=1e-9)
    np.testing.assert_allclose(hsv_to_rgb(np.array([1 / 3, 1.0, 1.0])), [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(hsv_to_rgb(np.array([2 / 3, 1.0, 0.5])), [0, 0, 0.5], atol=1e-9)
    np.testing.assert_allclose(hsv_to_rgb(np.array([0.3, 0.0, 0.7])), [0.7, 0.7, 0.7], atol=1e-9)
