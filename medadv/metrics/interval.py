"""Confidence intervals of the rates the report shows: a rate over a few dozen samples needs its interval."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate `successes / n`: unlike the normal approximation it stays
    inside [0, 1] and is not empty at rates of 0 or 1. (NaN, NaN) when n is 0."""
    if n < 0 or not 0 <= successes <= max(n, 0) or not 0 < confidence < 1:
        raise ValueError(f"need 0 <= successes <= n and 0 < confidence < 1, got {successes}/{n} at {confidence}")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / n
    denominator = 1 + z * z / n
    centre = (rate + z * z / (2 * n)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
