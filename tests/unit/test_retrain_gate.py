from __future__ import annotations

import math

import numpy as np
import pytest

from core.event_table import EventTable
from retrain.gate import decide, holdout_split, ranking_metrics


def test_worse_candidate_is_refused() -> None:
    d = decide(0.20, 0.30, 0.005, champion_version=3)
    assert not d.promote
    assert "worse than the champion" in d.reason and "v3" in d.reason
    assert d.candidate_ndcg == 0.20 and d.champion_ndcg == 0.30


def test_better_candidate_is_promoted() -> None:
    d = decide(0.35, 0.30, 0.005, champion_version=3)
    assert d.promote and "passed" in d.reason


@pytest.mark.parametrize("candidate", [0.30, 0.2951, 0.295])
def test_equal_or_within_tolerance_is_promoted(candidate: float) -> None:
    assert decide(candidate, 0.30, 0.005, champion_version=1).promote


def test_just_outside_tolerance_is_refused() -> None:
    assert not decide(0.2949, 0.30, 0.005, champion_version=1).promote


def test_first_model_without_champion_is_promoted() -> None:
    d = decide(0.01, None, 0.005, champion_version=None, eval_users=0)
    assert d.promote and "no champion" in d.reason


def test_unloadable_champion_lets_the_candidate_through_and_says_why() -> None:
    d = decide(0.1, None, 0.005, champion_version=None, champion_note="champion v2 cannot be loaded (x)")
    assert d.promote and "cannot be loaded" in d.reason


def test_nothing_to_compare_on_keeps_the_champion() -> None:
    d = decide(0.0, 0.0, 0.005, champion_version=2, eval_users=0)
    assert not d.promote and "no held-out user" in d.reason
    assert not d.judged and d.outcome == "not_judged"


# The decision table: (users, events, champion?) -> outcome, judged; minimums are 50 users / 200 events.
@pytest.mark.parametrize(
    ("users", "events", "champion", "outcome", "judged"),
    [
        (2, 10, True, "not_judged", False),  # the "0.0000 vs 0.0000 on 2 users"
        (49, 500, True, "not_judged", False),  # one user short
        (500, 199, True, "not_judged", False),  # one event short
        (50, 200, True, "promoted", True),  # exactly the minimums: judged
        (2, 10, False, "promoted", False),  # no champion: serve something, marked not judged
        (50, 200, False, "promoted", True),
        (0, 0, False, "promoted", False),
    ],
)
def test_gate_needs_evidence(users: int, events: int, champion: bool, outcome: str, judged: bool) -> None:
    d = decide(
        0.0,
        0.0 if champion else None,
        0.005,
        champion_version=4 if champion else None,
        eval_users=users,
        eval_events=events,
        min_users=50,
        min_events=200,
    )
    assert (d.outcome, d.judged) == (outcome, judged)
    assert f"{users} held-out users" in d.reason or users == 0
    if not judged:
        assert "not judged" in d.reason
    if outcome == "not_judged":
        assert "v4 kept" in d.reason


def test_judged_worse_candidate_is_rejected_not_unjudged() -> None:
    d = decide(0.1, 0.3, 0.005, champion_version=4, eval_users=60, eval_events=300, min_users=50)
    assert (d.outcome, d.judged) == ("rejected", True)


def test_nan_candidate_is_refused() -> None:
    assert not decide(math.nan, 0.1, 0.005, champion_version=1).promote


def test_ranking_metrics_matches_hand_computed_ndcg() -> None:
    targets = {"a": {"x"}, "b": {"y", "z"}}
    recs = {"a": ["x", "q"], "b": ["q", "y"]}
    m = ranking_metrics(recs, targets, k=10)
    ndcg_b = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx((1.0 + ndcg_b) / 2)
    assert m["hr@10"] == 1.0 and m["users"] == 2
    # A user without recommendations scores zero rather than disappearing from the mean.
    assert ranking_metrics({}, targets)["ndcg@10"] == 0.0


def _table(rows: list[tuple[str, str, int]]) -> EventTable:
    users, items, ts = zip(*rows, strict=True)
    return EventTable(
        user_id=np.array(users, dtype=str),
        item_id=np.array(items, dtype=str),
        event_type=np.array(["view"] * len(rows), dtype=str),
        value=np.full(len(rows), np.nan),
        ts_ms=np.array(ts, dtype=np.int64),
    )


def test_holdout_split_cuts_by_time_and_keeps_only_new_items_as_targets() -> None:
    rows = [("u1", f"i{t % 5}", t) for t in range(0, 10)] + [("u2", f"i{t % 3}", t) for t in range(10, 20)]
    rows += [("u1", "new", 100), ("u1", "i0", 101), ("u3", "only-late", 102)]
    split = holdout_split(_table(rows), fraction=0.13)
    assert split.cut_ms == 100  # floor(23 * 0.87) = 20th event by time
    assert int(split.train.ts_ms.max()) < split.cut_ms
    # u1 seen i0 before: only "new" is a target; u3 has no history so it cannot be evaluated.
    assert split.targets == {"u1": {"new"}}
    assert set(split.histories.user_id.tolist()) == {"u1"}


def test_holdout_never_judges_on_events_the_champion_trained_on() -> None:
    rows = [("u1", f"i{t}", t) for t in range(100)]
    split = holdout_split(_table(rows), fraction=0.2, champion_trained_until_ms=94)
    assert split.cut_ms == 80 and split.eval_start_ms == 95
    assert split.targets == {"u1": {f"i{t}" for t in range(95, 100)}}
    assert int(split.histories.ts_ms.max()) == 94
