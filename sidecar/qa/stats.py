"""Small statistics the detectors share (pure, standard library only)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def poisson_tail(n: int, mean: float) -> float:
    """P(X >= n) for X ~ Poisson(mean): exact below a mean of 200, a normal approximation (with
    continuity correction) above."""
    if n <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if mean > 200:
        return 0.5 * math.erfc((n - 0.5 - mean) / math.sqrt(2 * mean))
    below, log_pmf = 0.0, -mean  # log P(X = 0)
    for k in range(n):
        below += math.exp(log_pmf)
        log_pmf += math.log(mean) - math.log(k + 1)
    return max(0.0, 1.0 - below)


def binomial_z(k: int, n: int, p: float) -> float:
    """How many standard deviations ``k`` successes of ``n`` lie above what share ``p`` predicts."""
    if n == 0 or not 0 < p < 1:
        return 0.0
    return (k - n * p) / math.sqrt(n * p * (1 - p))


def two_proportion_z(k1: int, n1: int, k0: float, n0: float) -> float:
    """Pooled two-proportion z of ``k1/n1`` above ``k0/n0`` (the reference may be fractional: a
    smoothed count); 0 when either side is empty or the pooled share is 0 or 1."""
    if n1 <= 0 or n0 <= 0:
        return 0.0
    pooled = (k1 + k0) / (n1 + n0)
    if not 0 < pooled < 1:
        return 0.0
    return (k1 / n1 - k0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))


def mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t of mean(a) - mean(b); 0 when either side has fewer than two values. Variances
    are floored so that identical values do not make an infinite t."""
    if len(a) < 2 or len(b) < 2:
        return 0.0
    va = max(1e-4, sum((x - mean(a)) ** 2 for x in a) / (len(a) - 1))
    vb = max(1e-4, sum((x - mean(b)) ** 2 for x in b) / (len(b) - 1))
    return (mean(a) - mean(b)) / math.sqrt(va / len(a) + vb / len(b))


def slope_per_hour(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (x in seconds), per hour; 0 with fewer than two x values."""
    n = len(points)
    mx = sum(x for x, _ in points) / n if n else 0.0
    my = sum(y for _, y in points) / n if n else 0.0
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return 3600 * sum((x - mx) * (y - my) for x, y in points) / sxx
