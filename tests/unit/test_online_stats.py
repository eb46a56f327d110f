"""core.online_stats against published values and formulas worked by hand."""

from __future__ import annotations

import math

import pytest

from core.online_stats import difference, paired_difference, srm_p_value, wilson_interval


def close(got: tuple[float, float] | None, want: tuple[float, float], tol: float = 5e-5) -> bool:
    return got is not None and all(abs(g - w) < tol for g, w in zip(got, want, strict=True))


def test_wilson_interval_matches_newcombe_1998() -> None:
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I.
    assert close(wilson_interval(81, 263), (0.2553, 0.3662))
    assert close(wilson_interval(15, 148), (0.0624, 0.1605))
    assert close(wilson_interval(0, 20), (0.0, 0.1611))
    assert close(wilson_interval(1, 29), (0.0061, 0.1718))
    low, high = wilson_interval(20, 20) or (0, 0)
    assert high == 1.0 and abs(low - 0.8389) < 5e-5
    assert wilson_interval(0, 0) is None


def test_wilson_interval_by_hand() -> None:
    x, n, z = 30, 100, 1.959963984540054
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert close(wilson_interval(x, n), (centre - half, centre + half), 1e-12)


def test_difference_matches_newcombe_method_10() -> None:
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # Table II, method 10 (hybrid score): 56/70 - 48/80 and 9/10 - 3/10.
    d = difference(56, 70, 48, 80)
    assert d is not None and abs(d.diff - 0.2) < 1e-12
    assert close(d.ci95, (0.0524, 0.3339))
    d = difference(9, 10, 3, 10)
    assert d is not None and close(d.ci95, (0.1705, 0.8090))


def test_difference_p_value_is_the_pooled_z_test() -> None:
    x1, n1, x2, n2 = 120, 1000, 90, 1000
    pooled = (x1 + x2) / (n1 + n2)
    z = (x1 / n1 - x2 / n2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    want = math.erfc(abs(z) / math.sqrt(2))  # two-sided normal tail
    d = difference(x1, n1, x2, n2)
    assert d is not None and d.test == "z"
    assert abs(d.p_value - want) < 1e-12
    assert abs(want - 0.0294) < 1e-3  # z = 2.18
    assert d.significant  # p < 0.05 and the interval is above zero
    same = difference(100, 1000, 100, 1000)
    assert same is not None and same.p_value == 1.0 and not same.significant


def test_small_counts_use_fishers_exact_test() -> None:
    # 9/10 vs 3/10: expected cells of 4 < 5. Fisher's two-sided p by hand: tables at least as extreme
    # as [[9,1],[3,7]] under the hypergeometric with 12 successes among 20, 10 drawn.
    def hyper(a: int) -> float:
        return math.comb(12, a) * math.comb(8, 10 - a) / math.comb(20, 10)

    observed = hyper(9)
    want = sum(hyper(a) for a in range(2, 11) if hyper(a) <= observed * (1 + 1e-7))
    d = difference(9, 10, 3, 10)
    assert d is not None and d.test == "fisher"
    assert abs(d.p_value - want) < 1e-12 and abs(want - 0.0198) < 1e-3


def test_difference_needs_trials_and_sane_counts() -> None:
    assert difference(0, 0, 3, 10) is None
    with pytest.raises(ValueError):
        difference(11, 10, 3, 10)


def test_paired_difference_is_wald_with_an_exact_mcnemar_p() -> None:
    b, c, n = 10, 2, 100
    d = paired_difference(b, c, n)
    assert d is not None and d.test == "mcnemar"
    assert abs(d.diff - 0.08) < 1e-12
    half = 1.959963984540054 * math.sqrt(b + c - (b - c) ** 2 / n) / n
    assert close(d.ci95, (0.08 - half, 0.08 + half), 1e-9)
    # Exact binomial, two-sided: 2 * P(X <= 2 | 12, 0.5).
    want = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12
    assert abs(d.p_value - want) < 1e-12
    assert paired_difference(0, 0, 5).p_value == 1.0  # type: ignore[union-attr]
    assert paired_difference(0, 0, 0) is None
    with pytest.raises(ValueError):
        paired_difference(4, 3, 5)


def test_srm_is_a_chi_square_goodness_of_fit() -> None:
    # 5100 vs 4900 on a 50/50 split: chi2 = 2 * 100^2 / 5000 = 4, 1 df, p = erfc(sqrt(2)).
    p = srm_p_value([5100, 4900], [0.5, 0.5])
    assert p is not None and abs(p - math.erfc(math.sqrt(2.0))) < 1e-12
    # Unequal shares: expected 2000/8000 of 10000, observed exactly that.
    assert srm_p_value([2000, 8000], [0.2, 0.8]) == 1.0
    assert srm_p_value([0, 0], [0.5, 0.5]) is None
    with pytest.raises(ValueError):
        srm_p_value([1], [1.0])
