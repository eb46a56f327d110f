"""Pure helpers of `streamrec demo`: user and click choice, reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from core.event_table import EventTable
from core.events import InteractionEvent, validate_interaction
from tooling.demo.report import (
    changed,
    choose_clicks,
    click_events,
    item_ids,
    last_event_per_user,
    most_active_users,
    reason_text,
)


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


def test_reason_text_names_content_pins_and_rules() -> None:
    titles = {"m1": "Toy Story (1995)"}
    assert reason_text({"kind": "content", "new": True}, titles) == "new item (catalog content)"
    assert (
        reason_text({"kind": "content", "item_id": "m1"}, titles)
        == "similar to Toy Story (1995) (by catalog content)"
    )
    pinned = {"kind": "pinned", "rules": [{"rule_id": "demo-pin", "kind": "pin"}]}
    assert reason_text(pinned, titles) == "pinned · rule demo-pin (pin)"
    boosted = {"kind": "personalized", "rules": [{"rule_id": "b1", "kind": "boost"}]}
    assert reason_text(boosted, titles).endswith("rule b1 (boost)")
