"""Domain randomization: one range per physical parameter, and the vector θ over them.

A :class:`DomainRandomization` holds a closed range for every randomized parameter of the
grasp cell. Flattened as ``[low_0, high_0, low_1, high_1, ...]`` in field order it is the
vector θ that later searches (Safe-BO, CMA-ES in a Wasserstein ball; method.md §5)
move around; :meth:`DomainRandomization.theta` and :meth:`DomainRandomization.from_theta`
convert both ways. :meth:`DomainRandomization.sample` draws one concrete
:class:`PhysicsSample` per episode.
"""

from __future__ import annotations

import colorsys
import dataclasses
from typing import NamedTuple

import numpy as np

from graspfleet.config import ConfigError, Range

# Parameters that are multiplicative scales or physical magnitudes must stay >= 0;
# the per-axis jitters and offsets may be negative.
_NON_NEGATIVE = frozenset(
    {
        "object_mass",
        "object_friction",
        "joint_damping",
        "actuator_gain_scale",
        "backlash",
        "sensor_noise_scale",
        "object_saturation_scale",
        "object_value_scale",
        "light_saturation",
        "light_value",
    }
)


@dataclasses.dataclass(frozen=True)
class DomainRandomization:
    """Ranges of the randomized physics, appearance and sensing of a grasp cell.

    Units: kilograms, metres, radians, N·m·s/rad; "scale" fields are multipliers of the
    nominal value; hue values are fractions of the colour wheel (1.0 = 360°).
    """

    object_mass: Range = Range(0.15, 0.25)
    """Object mass (kg)."""
    object_com_offset: Range = Range(-0.005, 0.005)
    """Mass distribution: offset of the centre of mass from the geometric centre, per axis (m)."""
    object_friction: Range = Range(0.9, 1.1)
    """Sliding friction coefficient of the objects."""
    joint_damping: Range = Range(1.8, 2.2)
    """Viscous damping of the arm joints (N·m·s/rad)."""
    actuator_gain_scale: Range = Range(0.95, 1.05)
    """Multiplier of the arm's position-servo stiffness."""
    backlash: Range = Range(0.0, 0.002)
    """Gear backlash: width of the deadband between commanded and transmitted target (rad)."""
    sensor_noise_scale: Range = Range(0.8, 1.2)
    """Multiplier of every sensor's nominal noise standard deviation."""
    object_hue_jitter: Range = Range(-0.02, 0.02)
    """Shift of each object's hue away from its named colour (fraction of the wheel)."""
    object_saturation_scale: Range = Range(0.9, 1.0)
    """Multiplier of each object's colour saturation."""
    object_value_scale: Range = Range(0.9, 1.0)
    """Multiplier of each object's colour value (brightness)."""
    light_hue: Range = Range(0.1, 0.15)
    """Hue of the light (fraction of the wheel; ~0.12 is warm white)."""
    light_saturation: Range = Range(0.0, 0.05)
    """Saturation of the light colour (0 = white)."""
    light_value: Range = Range(0.9, 1.0)
    """Intensity of the light."""
    camera_position_jitter: Range = Range(-0.005, 0.005)
    """Offset of the camera from its nominal position, per axis (m)."""
    camera_rotation_jitter: Range = Range(-0.01, 0.01)
    """Rotation of the camera about each axis of its nominal frame (rad)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, Range):
                raise ConfigError(f"{f.name}: expected a Range, got {value!r}")
            if f.name in _NON_NEGATIVE and value.low < 0:
                raise ConfigError(f"{f.name}: must be >= 0, got range [{value.low}, {value.high}]")
        if self.object_mass.low <= 0:
            raise ConfigError(f"object_mass: must be > 0 kg, got low={self.object_mass.low}")
        if self.light_value.high <= 0:
            raise ConfigError("light_value: the light must have a positive intensity")

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """Names of the randomized parameters, in θ order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def theta_names(cls) -> tuple[str, ...]:
        """Names of the entries of θ: ``<param>.low`` and ``<param>.high`` per parameter."""
        return tuple(f"{n}.{end}" for n in cls.parameter_names() for end in ("low", "high"))

    def theta(self) -> np.ndarray:
        """The randomization setting as one flat vector θ (float64, length 2·P)."""
        return np.array(
            [v for n in self.parameter_names() for v in (getattr(self, n).low, getattr(self, n).high)],
            dtype=np.float64,
        )

    @classmethod
    def from_theta(cls, theta: np.ndarray | list[float]) -> DomainRandomization:
        """Rebuild a randomization setting from θ; refuses a wrong length or an empty range."""
        vec = np.asarray(theta, dtype=np.float64)
        names = cls.parameter_names()
        if vec.shape != (2 * len(names),):
            raise ConfigError(f"theta: expected shape ({2 * len(names)},), got {vec.shape}")
        kwargs = {}
        for i, name in enumerate(names):
            try:
                kwargs[name] = Range(float(vec[2 * i]), float(vec[2 * i + 1]))
            except ConfigError as exc:
                raise ConfigError(f"theta[{name}]: {exc}") from None
        return cls(**kwargs)

    def sample(self, rng: np.random.Generator) -> PhysicsSample:
        """Draw one episode's concrete physics and appearance from the ranges."""
        return PhysicsSample(
            object_mass=float(self.object_mass.sample(rng)),
            object_com_offset=np.asarray(self.object_com_offset.sample(rng, 3), dtype=np.float64),
            object_friction=float(self.object_friction.sample(rng)),
            joint_damping=float(self.joint_damping.sample(rng)),
            actuator_gain_scale=float(self.actuator_gain_scale.sample(rng)),
            backlash=float(self.backlash.sample(rng)),
            sensor_noise_scale=float(self.sensor_noise_scale.sample(rng)),
            object_hue_jitter=float(self.object_hue_jitter.sample(rng)),
            object_saturation_scale=float(self.object_saturation_scale.sample(rng)),
            object_value_scale=float(self.object_value_scale.sample(rng)),
            light_hsv=np.array(
                [
                    self.light_hue.sample(rng) % 1.0,
                    self.light_saturation.sample(rng),
                    self.light_value.sample(rng),
                ]
            ),
            camera_position_jitter=np.asarray(self.camera_position_jitter.sample(rng, 3), dtype=np.float64),
            camera_rotation_jitter=np.asarray(self.camera_rotation_jitter.sample(rng, 3), dtype=np.float64),
        )


class PhysicsSample(NamedTuple):
    """One episode's draw from a :class:`DomainRandomization` (units as there)."""

    object_mass: float
    object_com_offset: np.ndarray
    object_friction: float
    joint_damping: float
    actuator_gain_scale: float
    backlash: float
    sensor_noise_scale: float
    object_hue_jitter: float
    object_saturation_scale: float
    object_value_scale: float
    light_hsv: np.ndarray
    camera_position_jitter: np.ndarray
    camera_rotation_jitter: np.ndarray


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Convert one HSV colour (hue wraps around 1; saturation and value clipped to [0, 1]) to RGB."""
    h, sat, val = (float(x) for x in np.asarray(hsv, dtype=np.float64))
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(sat, 0.0), 1.0), min(max(val, 0.0), 1.0)))
