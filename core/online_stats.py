"""The statistics of the online reports (pure; scipy.stats for the distributions).

* A proportion (click-through rate, conversion rate): the **Wilson score** 95% interval, which stays
  inside [0, 1] and behaves at 0 or n successes, where the Wald interval collapses to a point.
* The difference of two independent proportions (treatment minus control): Newcombe's **hybrid
  score** interval (Newcombe 1998, method 10: the two Wilson intervals combined), and the two-sided
  p-value of the pooled **two-proportion z-test**; when an expected cell count is below 5 the
  normal approximation is poor and **Fisher's exact test** gives the p-value instead.
* A paired difference of two proportions (shadow: the same shopper's next click judged against two
  lists): the **Wald** interval of the paired difference and the **exact McNemar** test (a binomial
  test on the discordant pairs).
* Sample-ratio mismatch: the p-value of a **chi-square goodness-of-fit** test of the units seen per
  variant against the configured shares. A tiny p-value (below ``SRM_ALPHA``) means the split is
  broken (a bug in assignment or logging), and no comparison of those variants can be trusted.

Every function returns ``None`` for what cannot be estimated (no trials), never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
# The usual significance level of a decision, and the stricter one for a sample-ratio mismatch:
# SRM is checked on every report, so a loose threshold would raise false alarms all the time.
ALPHA = 0.05
SRM_ALPHA = 0.001
# Below this expected count in a 2x2 cell the z-test's normal approximation is not trusted.
MIN_EXPECTED_FOR_Z = 5.0

Interval = tuple[float, float]


def _z(confidence: float = CONFIDENCE) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval | None:
    """The Wilson score interval of ``successes / trials``; None without trials."""
    _check_counts(successes, trials)
    if trials == 0:
        return None
    z = _z(confidence)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # Exact bounds at the edges (the formula gives them only up to rounding).
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


@dataclass(frozen=True)
class Difference:
    """Treatment minus control, with its interval and the two-sided p-value of "no difference"."""

    diff: float
    ci95: Interval
    p_value: float
    test: str  # "z" (two-proportion z-test), "fisher" (exact) or "mcnemar" (paired, exact)

    @property
    def significant(self) -> bool:
        """p below ALPHA and an interval that excludes zero (both, so the two never disagree)."""
        low, high = self.ci95
        return self.p_value < ALPHA and (low > 0.0 or high < 0.0)


def difference(
    treatment_successes: int, treatment_trials: int, control_successes: int, control_trials: int
) -> Difference | None:
    """Newcombe's hybrid score interval and a z-test (Fisher's exact for small counts) p-value."""
    x1, n1, x2, n2 = treatment_successes, treatment_trials, control_successes, control_trials
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1) or (0.0, 1.0)
    l2, u2 = wilson_interval(x2, n2) or (0.0, 1.0)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    pooled = (x1 + x2) / (n1 + n2)
    expected = min(n1, n2) * min(pooled, 1.0 - pooled)
    if expected < MIN_EXPECTED_FOR_Z:
        _, p_value = stats.fisher_exact([[x1, n1 - x1], [x2, n2 - x2]], alternative="two-sided")
        return Difference(diff, (low, high), _probability(p_value), "fisher")
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    z = diff / se
    return Difference(diff, (low, high), _probability(2.0 * stats.norm.sf(abs(z))), "z")


def paired_difference(only_first: int, only_second: int, pairs: int) -> Difference | None:
    """First minus second on the same units: ``only_first`` pairs where only the first succeeded,
    ``only_second`` where only the second did, out of ``pairs``. Wald interval, exact McNemar p."""
    b, c, n = only_first, only_second, pairs
    if min(b, c, n) < 0 or b + c > n:
        raise ValueError(f"discordant pairs ({b} + {c}) must fit in {n} pairs")
    if n == 0:
        return None
    diff = (b - c) / n
    half = _z() * math.sqrt(max(0.0, (b + c) - (b - c) ** 2 / n)) / n
    p_value = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    return Difference(diff, (diff - half, diff + half), _probability(p_value), "mcnemar")


def srm_p_value(units: Sequence[int], shares: Sequence[float]) -> float | None:
    """Chi-square goodness of fit of ``units`` per variant against ``shares``; None without units."""
    if len(units) != len(shares) or len(units) < 2:
        raise ValueError("one unit count and one share per variant, at least two variants")
    if any(u < 0 for u in units) or any(s <= 0 for s in shares):
        raise ValueError("unit counts must be >= 0 and shares > 0")
    total = sum(units)
    if total == 0:
        return None
    share_sum = sum(shares)
    expected = [total * s / share_sum for s in shares]
    _, p_value = stats.chisquare(list(units), expected)
    return _probability(p_value)


def _check_counts(successes: int, trials: int) -> None:
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"successes ({successes}) must be between 0 and trials ({trials})")


def _probability(value: float) -> float:
    """A p-value as a plain float in [0, 1] (scipy returns numpy scalars, at times 1 + 1e-16)."""
    return min(1.0, max(0.0, float(value)))
