"""Paired bootstrap intervals of a per-user metric difference, and the words BENCHMARKS.md uses for them.

Resampling users (not each model separately) keeps the pairing: what two models share (a hard user is
hard for both) does not widen the interval. 1,000 resamples with a fixed seed make the figure
reproducible run to run.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from model.metrics import paired_bootstrap

RESAMPLES = 1000
SEED = 0


def delta_ci95(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> list[float]:
    """[mean, low, high] of ``a - b`` over users with its 95% percentile interval (rounded to 5 places)."""
    mean, lo, hi = paired_bootstrap(a, b, resamples=resamples, level=0.95, seed=seed)
    return [round(mean, 5), round(lo, 5), round(hi, 5)]


def verdict(low: float, high: float) -> str:
    """'better' only when the whole interval is above 0, 'worse' when below, else 'tie'."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "tie"
    if low > 0.0:
        return "better"
    if high < 0.0:
        return "worse"
    return "tie"


def best_by(scores: Mapping[str, float]) -> str:
    """The name with the highest score (ties: the first listed)."""
    if not scores:
        raise ValueError("no scores to choose from")
    names = list(scores)
    return max(names, key=lambda n: (scores[n], -names.index(n)))
