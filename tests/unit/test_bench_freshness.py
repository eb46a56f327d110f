"""`bench freshness`'s pure parts: percentiles with timed-out samples censored at the timeout, the
report's figures and target check, and when an answer counts as reflecting the shopper's click."""

from __future__ import annotations

import threading
from itertools import islice

import orjson
import pytest

from core.events import InteractionEvent, parse_interaction
from tooling.bench.background_load import USER_PREFIX, background_events
from tooling.bench.freshness_stats import (
    Percentile,
    censored_percentiles,
    freshness_figures,
    nearest_rank,
    reflects,
)


def test_nearest_rank_is_the_smallest_value_with_q_of_the_samples_at_or_below_it() -> None:
    assert nearest_rank(200, 0.95) == 189  # the 190th of 200: ten samples lie above it
    assert nearest_rank(200, 0.99) == 197
    assert nearest_rank(200, 0.5) == 99
    assert nearest_rank(200, 1.0) == 199
    assert nearest_rank(20, 0.95) == 18  # 19th of 20, never the 20th
    assert nearest_rank(3, 0.5) == 1
    assert nearest_rank(1, 0.99) == 0
    assert nearest_rank(10, 0.0) == 0


@pytest.mark.parametrize(("n", "q"), [(0, 0.5), (5, -0.1), (5, 1.5)])
def test_nearest_rank_refuses_no_samples_and_quantiles_outside_0_1(n: int, q: float) -> None:
    with pytest.raises(ValueError):
        nearest_rank(n, q)


def test_without_timeouts_the_percentiles_are_measured_values() -> None:
    delays = [i / 100 for i in range(1, 201)]  # 0.01 .. 2.00 s, shuffled order must not matter
    pcts = censored_percentiles(delays[::-1], censored=0, timeout_s=10.0)
    assert pcts["p50"] == Percentile(1.00, False)
    assert pcts["p95"] == Percentile(1.90, False)
    assert pcts["p99"] == Percentile(1.98, False)
    assert pcts["max"] == Percentile(2.00, False)


def test_timeouts_stay_in_the_percentiles_at_the_timeout_value() -> None:
    # 190 fast samples and 10 timeouts: p95 is still the 190th (measured), p99 and max are censored.
    fast = [0.1] * 189 + [0.4]
    pcts = censored_percentiles(fast, censored=10, timeout_s=5.0)
    assert pcts["p95"] == Percentile(0.4, False)
    assert pcts["p99"] == Percentile(5.0, True)
    assert pcts["max"] == Percentile(5.0, True)
    # One more timeout (11 of 201) pushes p95 onto a censored sample: a lower bound, not a figure.
    pcts = censored_percentiles(fast, censored=11, timeout_s=5.0)
    assert pcts["p95"] == Percentile(5.0, True)


def test_dropping_timeouts_would_flatter_p95_which_censoring_does_not() -> None:
    measured = [0.2] * 180
    dropped = censored_percentiles(measured, censored=0, timeout_s=10.0)["p95"]
    kept = censored_percentiles(measured, censored=20, timeout_s=10.0)["p95"]
    assert dropped == Percentile(0.2, False)
    assert kept == Percentile(10.0, True)


def test_all_samples_timed_out() -> None:
    pcts = censored_percentiles([], censored=4, timeout_s=2.0)
    assert all(p == Percentile(2.0, True) for p in pcts.values())


@pytest.mark.parametrize(
    ("measured", "censored", "timeout_s"),
    [([], 0, 1.0), ([0.5], -1, 1.0), ([0.5], 0, 0.0), ([1.5], 0, 1.0), ([-0.1], 0, 1.0)],
)
def test_bad_input_is_refused(measured: list[float], censored: int, timeout_s: float) -> None:
    with pytest.raises(ValueError):
        censored_percentiles(measured, censored, timeout_s)


def test_the_report_figures_and_the_target_check() -> None:
    figures = freshness_figures([0.1] * 190 + [0.9] * 10, censored=0, timeout_s=10.0, target_p95_s=1.0)
    assert figures["samples"] == 200 and figures["measured"] == 200
    assert figures["censored"] == figures["timeouts"] == 0
    assert figures["p50_s"] == 0.1 and figures["p95_s"] == 0.1 and figures["max_s"] == 0.9
    assert figures["p95_ms"] == 100.0 and figures["p99_ms"] == 900.0
    assert figures["censored_figures"] == []
    assert figures["p95_target_met"] is True

    slow = freshness_figures([0.1] * 180 + [1.2] * 20, censored=0, timeout_s=10.0, target_p95_s=1.0)
    assert slow["p95_s"] == 1.2 and slow["p95_target_met"] is False


def test_a_censored_p95_never_meets_the_target_even_below_it() -> None:
    # A timeout shorter than the target: the censored p95 (0.5 s) is below 1 s but only a lower bound.
    figures = freshness_figures([0.1] * 10, censored=10, timeout_s=0.5, target_p95_s=1.0)
    assert figures["p95_s"] == 0.5
    assert figures["censored_figures"] == ["p95", "p99", "max"]
    assert figures["p95_target_met"] is False
    assert figures["samples"] == 20 and figures["censored"] == 10


def _item(kind: str, item_id: str | None = None) -> dict[str, object]:
    reason: dict[str, object] = {"kind": kind}
    if item_id is not None:
        reason["item_id"] = item_id
    return {"item_id": "x", "score": 1.0, "reason": reason}


def test_an_answer_reflects_the_click_when_the_session_ranked_it() -> None:
    assert not reflects([_item("popular"), _item("popular")], "i7")
    assert not reflects([], "i7")
    assert reflects([_item("session"), _item("popular")], "i7")
    assert reflects([_item("popular"), _item("similar_to", "i7")], "i7")
    # A list that changed for another reason is not the click's answer.
    assert not reflects([_item("similar_to", "i8")], "i7")
    assert not reflects([_item("personalized")], "i7")


def test_background_events_are_valid_events_of_other_shoppers_until_stopped() -> None:
    stop = threading.Event()
    records = list(islice(background_events(["i1", "i2", "i3"], users=50, seed=4, stop=stop), 500))
    parsed = [parse_interaction(value) for _key, value in records]
    events = [e for e in parsed if isinstance(e, InteractionEvent)]
    assert len(events) == len(parsed)  # every one passes the consumer's own validation
    assert len({e.event_id for e in events}) == 500
    assert all(
        e.user_id.startswith(USER_PREFIX) and key == e.user_id.encode()
        for (key, _), e in zip(records, events, strict=True)
    )
    assert {e.item_id for e in events} <= {"i1", "i2", "i3"}
    assert {e.event_type.value for e in events} >= {"view", "click"}
    assert orjson.loads(records[0][1])["user_id"] == events[0].user_id
    stop.set()
    assert list(background_events(["i1"], users=5, seed=4, stop=stop)) == []
