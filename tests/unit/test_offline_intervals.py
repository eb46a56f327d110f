"""The benchmark's paired bootstrap interval and the words BENCHMARKS.md uses for it."""

from __future__ import annotations

import numpy as np

from tooling.offline.intervals import best_by, delta_ci95, verdict


def test_a_clear_gain_is_better_and_noise_is_a_tie() -> None:
    rng = np.random.default_rng(7)
    base = rng.random(400)
    mean, lo, hi = delta_ci95(base + 0.05 + rng.normal(0, 0.02, 400), base)
    assert 0.0 < lo < mean < hi and verdict(lo, hi) == "better"
    _, lo, hi = delta_ci95(base + rng.normal(0, 0.2, 400), base)
    assert lo < 0.0 < hi and verdict(lo, hi) == "tie"
    _, lo, hi = delta_ci95(base - 0.05, base)
    assert verdict(lo, hi) == "worse"


def test_the_interval_is_reproducible_and_paired() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random(100), rng.random(100)
    assert delta_ci95(a, b) == delta_ci95(a, b)
    # Each user's own level cancels in the pairing: a constant shift has a zero-width interval.
    assert delta_ci95(a + 0.1, a) == [0.1, 0.1, 0.1]
    # A lower bound of exactly zero is not "better".
    assert verdict(0.0, 0.2) == "tie" and verdict(float("nan"), 1.0) == "tie"


def test_best_by_takes_the_highest_and_the_first_on_ties() -> None:
    assert best_by({"ease": 0.2, "ials": 0.25, "knn": 0.25}) == "ials"
