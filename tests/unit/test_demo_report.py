"""Pure helpers of `streamrec demo`: baseline, quality rows, user and click choice, reasons."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np

from cli.demo_report import (
    changed,
    choose_clicks,
    click_events,
    item_ids,
    last_event_per_user,
    lift,
    most_active_users,
    popularity_recs,
    quality_rows,
    reason_text,
)
from core.event_table import EventTable
from core.events import InteractionEvent, validate_interaction
from retrain.gate import ranking_metrics


def table(rows: list[tuple[str, str]]) -> EventTable:
    return EventTable(
        user_id=np.array([u for u, _ in rows], dtype=str),
        item_id=np.array([i for _, i in rows], dtype=str),
        event_type=np.array(["view"] * len(rows), dtype=str),
        value=np.full(len(rows), np.nan),
        ts_ms=np.arange(len(rows), dtype=np.int64),
    )


def ev(n: int, user: str, item: str = "i") -> InteractionEvent:
    return InteractionEvent.model_validate(
        {"event_id": f"e{n}", "event_type": "view", "user_id": user, "item_id": item, "timestamp": 1000 + n}
    )


def test_popularity_ranks_by_frequency_and_skips_the_users_history() -> None:
    train = table([("a", "x"), ("b", "x"), ("c", "x"), ("a", "y"), ("b", "y"), ("c", "z")])
    hist = table([("u", "x")])
    recs = popularity_recs(train, hist, ["u", "v"], k=2)
    assert recs == {"u": ["y", "z"], "v": ["x", "y"]}
    # Ties break by item id, so the baseline is deterministic.
    assert popularity_recs(table([("a", "q"), ("a", "p")]), table([]), ["n"], k=5) == {"n": ["p", "q"]}


def test_popularity_baseline_scores_with_the_gate_metrics() -> None:
    train = table([("a", "x"), ("b", "x"), ("a", "y")])
    recs = popularity_recs(train, table([("u", "y")]), ["u"], k=10)
    assert ranking_metrics(recs, {"u": {"x"}})["hr@10"] == 1.0
    assert ranking_metrics(recs, {"u": {"nope"}})["ndcg@10"] == 0.0


def test_quality_rows_read_the_holdout_metrics_and_the_baseline() -> None:
    model = {"holdout_ndcg@10": 0.3, "holdout_recall@10": 0.4, "holdout_hr@10": 0.5, "other": 1}
    rows = quality_rows("streamrec v3", model, {"ndcg@10": 0.1, "recall@10": 0.2, "hr@10": 0.25})
    assert [r.name for r in rows] == ["streamrec v3", "popularity"]
    assert rows[0].values == {"ndcg@10": 0.3, "recall@10": 0.4, "hr@10": 0.5}
    assert rows[1].values["hr@10"] == 0.25
    assert math.isnan(quality_rows("m", {}, {})[0].values["ndcg@10"])


def test_lift() -> None:
    assert lift(0.3, 0.1) == "3.0x"
    assert lift(0.05, 0.0) == "+0.0500"


def test_most_active_users_and_last_event_per_user() -> None:
    events = [ev(1, "b"), ev(2, "a"), ev(3, "b"), ev(4, "c"), ev(5, "a"), ev(6, "b")]
    assert most_active_users(events, 2) == ["b", "a"]
    assert most_active_users(events, 10) == ["b", "a", "c"]
    assert sorted(last_event_per_user(events)) == ["e4", "e5", "e6"]


def test_choose_clicks_skips_shown_and_seen_items() -> None:
    picks = choose_clicks("u", ["a", "b"], ["a", "c", "c", "d", "e", "f"], {"d"}, n=3)
    assert picks == ["c", "e", "f"]
    assert choose_clicks("u", ["a"], ["a"], set()) == []


def test_click_events_are_valid_schema_v1_clicks_in_order() -> None:
    now = int(datetime.now(UTC).timestamp() * 1000)
    events = click_events("u1", ["x", "y"], ["id1", "id2"], now)
    parsed = [validate_interaction(e) for e in events]
    assert all(isinstance(p, InteractionEvent) for p in parsed)
    assert [e["timestamp"] for e in events] == [now, now + 1]
    assert {e["event_type"] for e in events} == {"click"}


def test_reasons_and_changes() -> None:
    titles = {"m1": "Toy Story (1995)"}
    assert reason_text({"kind": "similar_to", "item_id": "m1"}, titles) == "similar to Toy Story (1995)"
    assert reason_text({"kind": "similar_to", "item_id": "m2"}, titles) == "similar to m2"
    assert reason_text({"kind": "session"}, titles).startswith("session")
    assert reason_text({"kind": "brand_new"}, titles) == "brand_new"
    body = {"items": [{"item_id": "a"}, {"item_id": "b"}]}
    assert item_ids(body) == ["a", "b"]
    assert changed(["a", "b"], ["b", "a"]) and not changed(["a"], ["a"])
