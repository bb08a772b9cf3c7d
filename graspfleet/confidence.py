"""Confidence intervals of rates measured over a finite number of episodes."""

from __future__ import annotations

import math
import statistics


def wilson_interval(successes: float, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a rate ``successes / trials`` at ``confidence`` (two-sided);
    ``(0, 1)`` without trials. ``successes`` may be a rate × trials that is not a whole number."""
    if trials == 0:
        return 0.0, 1.0
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # exact at the ends, where rounding would leave a 1e-17 gap
    low = 0.0 if p <= 0 else max(0.0, centre - half)
    high = 1.0 if p >= 1 else min(1.0, centre + half)
    return low, high
