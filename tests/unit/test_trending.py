"""core.trending: rates under the readers' bucket decay, growth, the minimum count and the prior."""

from __future__ import annotations

import pytest

from core.keys import WINDOWS
from core.trending import exposure_s, trending


def steady_score(window: str, rate_per_s: float, now_s: float) -> float:
    """What a reader merges for a stream of ``rate_per_s`` events a second that ran for weeks."""
    win = WINDOWS[window]
    total = 0.0
    for start in win.live_buckets(now_s):
        events = rate_per_s * (min(start + win.bucket_s, now_s) - start)
        total += events * win.bucket_weight(start, now_s)
    return total


@pytest.mark.parametrize("now_s", [1_700_000_000.0, 1_700_000_123.4, 1_700_003_599.0])
def test_a_steady_stream_has_the_same_rate_in_both_windows(now_s: float) -> None:
    for window in ("1h", "7d"):
        rate = steady_score(window, 0.5, now_s) / exposure_s(WINDOWS[window], now_s)
        assert rate == pytest.approx(0.5)
    # ... so with a negligible prior its growth is 1.
    short = steady_score("1h", 0.5, now_s)
    long = steady_score("7d", 0.5, now_s)
    (score,) = trending(
        [("a", short)],
        {"a": long},
        short_exposure_s=exposure_s(WINDOWS["1h"], now_s),
        long_exposure_s=exposure_s(WINDOWS["7d"], now_s),
        min_count=0.0,
        prior_count=1e-9,
    )
    assert score.growth == pytest.approx(1.0)
    assert score.short_per_h == pytest.approx(1800.0) and score.long_per_h == pytest.approx(1800.0)


def test_exposure_is_below_the_nominal_length_because_old_buckets_weigh_less() -> None:
    now = 1_700_000_000.0
    assert 0 < exposure_s(WINDOWS["1h"], now) < 3600 + 300
    assert exposure_s(WINDOWS["7d"], now) < 7 * 86400


def test_growth_orders_items_and_the_minimum_count_and_prior_apply() -> None:
    kwargs = {"short_exposure_s": 3600.0, "long_exposure_s": 100 * 3600.0, "prior_count": 10.0}
    short = [("steady", 50.0), ("rising", 20.0), ("tiny", 2.0), ("fresh", 6.0)]
    long = {"steady": 5000.0, "rising": 100.0, "tiny": 0.0}
    scores = trending(short, long, min_count=5.0, **kwargs)  # type: ignore[arg-type]
    assert [s.item_id for s in scores] == ["fresh", "rising", "steady"]  # "tiny" is under the minimum
    by_id = {s.item_id: s for s in scores}
    # growth = (short / 1h) / ((long + prior) / 100h)
    assert by_id["rising"].growth == pytest.approx(20.0 / (110.0 / 100.0))
    assert by_id["steady"].growth == pytest.approx(50.0 / (5010.0 / 100.0))
    # No history at all: only the prior holds the growth finite.
    assert by_id["fresh"].growth == pytest.approx(6.0 / (10.0 / 100.0))
    assert by_id["fresh"].long_per_h == 0.0 and by_id["rising"].short_per_h == pytest.approx(20.0)


def test_ties_and_degenerate_windows() -> None:
    kwargs = {"short_exposure_s": 3600.0, "long_exposure_s": 3600.0, "min_count": 0.0, "prior_count": 1.0}
    scores = trending([("b", 4.0), ("a", 4.0), ("c", 8.0)], {"a": 3.0, "b": 3.0, "c": 7.0}, **kwargs)  # type: ignore[arg-type]
    assert [s.item_id for s in scores] == ["c", "a", "b"]  # c: 8/8 = 1 ties a, b (4/4), more events first
    assert (
        trending([("a", 5.0)], {}, short_exposure_s=0.0, long_exposure_s=1.0, min_count=0, prior_count=1)
        == []
    )
    # No prior and no long-window score: growth is undefined, the item is left out (never infinite).
    assert (
        trending([("a", 5.0)], {}, short_exposure_s=1.0, long_exposure_s=1.0, min_count=0, prior_count=0)
        == []
    )
