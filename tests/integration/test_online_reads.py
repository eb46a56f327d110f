"""Contract of the event store's report reads (``attributed_events``, ``events_of_users_since``) and
of the reports built on them: MongoEventStore + MongoImpressionStore on the real MongoDB-wire server
and the in-memory twins answer the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import storage.event_store
from storage.event_store import MongoEventStore
from storage.event_store_memory import InMemoryEventStore
from storage.impressions import InMemoryImpressionStore
from storage.impressions_mongo import MongoImpressionStore
from storage.online_reads import read_online_report, read_shadow_report
from tests.unit.online_fixtures import event, impression, recent

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(params=["mongo", "twin"])
def stores(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    if request.param == "twin":
        yield InMemoryEventStore(), InMemoryImpressionStore()
        return
    settings = request.getfixturevalue("settings")
    events = MongoEventStore.from_settings(settings.mongo)
    events.ensure_indexes()
    impressions = MongoImpressionStore.from_settings(settings.mongo)
    try:
        yield events, impressions
    finally:
        impressions.close()
        events.close()


def minutes_ago(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def at(doc: dict[str, Any], minutes: float) -> dict[str, Any]:
    """``doc`` at a time ``minutes`` before NOW (whole milliseconds: what MongoDB keeps)."""
    doc["ts"] = minutes_ago(minutes)
    return doc


def test_attributed_events_are_the_window_and_the_report_fields(stores: tuple[Any, Any]) -> None:
    events, _ = stores
    shown = impression("r1", "u1", minutes=recent(100))
    events.insert_events(
        [
            at(event("in", shown), 50),
            at(event("too-old", shown), 200),
            at(event("unattributed", None), 50),
            at(event("buy", shown, "purchase", item="b"), 10),
            at(event("future", shown), -10),
        ]
    )
    got = sorted(events.attributed_events(minutes_ago(100), minutes_ago(0)), key=lambda d: d["_id"])
    assert [d["_id"] for d in got] == ["buy", "in"]
    buy = got[0]
    assert set(buy) == {"_id", "user_id", "item_id", "event_type", "ts", "attribution"}
    assert buy["ts"] == minutes_ago(10) and buy["ts"].tzinfo is not None
    assert buy["attribution"]["impression_id"] == "r1" and buy["attribution"]["position"] == 1
    assert {d["_id"] for d in events.attributed_events(minutes_ago(100))} == {"in", "buy", "future"}


def test_events_of_users_since_filters_users_types_and_time(
    stores: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    events, _ = stores
    monkeypatch.setattr(storage.event_store, "USERS_PER_QUERY", 2)  # several $in queries
    docs = []
    for u in range(5):
        docs.append(at(event(f"c{u}", None, user=f"u{u}"), 30))
        docs.append(at(event(f"v{u}", None, "view", user=f"u{u}"), 30))
        docs.append(at(event(f"old{u}", None, user=f"u{u}"), 300))
    events.insert_events(docs)
    got = events.events_of_users_since(
        ["u0", "u1", "u2", "u4", "u4", "nobody"], minutes_ago(60), minutes_ago(0), ["click", "purchase"]
    )
    assert sorted(d["_id"] for d in got) == ["c0", "c1", "c2", "c4"]
    every_type = events.events_of_users_since(["u3"], minutes_ago(60))
    assert sorted(d["_id"] for d in every_type) == ["c3", "v3"]
    assert list(events.events_of_users_since([], minutes_ago(60))) == []


def test_the_reports_read_the_same_from_mongodb_and_the_twins(stores: tuple[Any, Any]) -> None:
    events, impressions = stores
    lists = [impression(f"r{i}", f"u{i}", version=str(1 + i % 2), minutes=recent(40)) for i in range(6)]
    lists.append(impression("r0", "u0", ("x", "b"), version="9", minutes=recent(40), shadow=True))
    for doc in lists:
        at(doc, 40)
    impressions.insert_impressions(lists)
    events.insert_events(
        [
            at(event("e1", lists[2]), 39),
            at(event("e2", lists[1], "add_to_cart", item="c"), 38),
            at(event("e3", lists[1], "purchase", item="c"), 37),
            at(event("n0", None, item="x", user="u0"), 35),
        ]
    )
    online = read_online_report(impressions, events, since=minutes_ago(60), by="model_version", until=NOW)
    rows = {r["group"]: r for r in online.rows}
    assert (rows["1"]["impressions"], rows["1"]["clicks"]) == (3, 1)
    assert (rows["2"]["add_to_carts"], rows["2"]["purchases"], rows["2"]["conversion_rate"]) == (1, 1, 1 / 3)
    by_position = read_online_report(impressions, events, since=minutes_ago(60), by="position", until=NOW)
    assert [r["clicks"] for r in by_position.rows] == [1, 0, 0]
    shadow = read_shadow_report(
        impressions, events, since=minutes_ago(60), window_s=1800, until=NOW
    ).to_dict()
    assert (shadow["pairs"], shadow["shadow_hits"], shadow["live_hits"]) == (1, 1, 0)
    assert shadow["shadow_versions"] == ["9"] and shadow["live_versions"] == ["1"]
