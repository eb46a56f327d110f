"""MongoEventStore against the real MongoDB-wire server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer.batch import content_key
from consumer.isolate import bisect_apply, insert_isolating
from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.event_store_memory import InMemoryEventStore

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def doc(eid: str, user: str = "u1", minutes: int = 0, offset: int = 0) -> dict:
    ts = T0 + timedelta(minutes=minutes)
    return {
        "_id": eid,
        "user_id": user,
        "item_id": "i1",
        "event_type": "view",
        "ts": ts,
        "ts_ms": int(ts.timestamp() * 1000),
        "value": None,
        "session_id": None,
        "properties": None,
        "src": {"topic": "ev", "partition": 0, "offset": offset},
        "ingested_at": T0,
    }


@pytest.fixture
def store(settings: Settings):
    s = MongoEventStore.from_settings(settings.mongo)
    s.ensure_indexes()
    yield s
    s.close()


def test_insert_uses_event_id_and_reports_duplicates(store: MongoEventStore, mongo_db) -> None:
    first = store.insert_events([doc("e1", offset=0), doc("e2", offset=1)])
    assert sorted(first.inserted) == ["e1", "e2"] and first.duplicates == []
    again = store.insert_events([doc("e3", offset=2), doc("e1", offset=9), doc("e4", offset=3), doc("e2")])
    assert sorted(again.inserted) == ["e3", "e4"]
    assert sorted(again.duplicates) == ["e1", "e2"]
    assert mongo_db["events"].count_documents({}) == 4
    stored = mongo_db["events"].find_one({"_id": "e1"})
    assert stored["src"] == {"topic": "ev", "partition": 0, "offset": 0}  # the first write wins
    assert store.stored_events(["nope"]) == {"nope": None}
    assert store.stored_events(["e1"])["e1"]["src"] == {"topic": "ev", "partition": 0, "offset": 0}
    names = {ix["name"] for ix in mongo_db["events"].list_indexes()}
    assert {"user_ts", "ts"} <= names


def test_items_upsert_partially(store: MongoEventStore) -> None:
    store.upsert_items([{"item_id": "i1", "title": "Mug", "category": "kitchen", "price": 3.0}])
    store.upsert_items([{"item_id": "i1", "available": False}, {"item_id": "i2", "title": "Pot"}])
    items = store.get_items(["i1", "i2", "i3"])
    assert set(items) == {"i1", "i2"}
    assert (items["i1"]["title"], items["i1"]["category"], items["i1"]["available"]) == (
        "Mug",
        "kitchen",
        False,
    )
    assert sum(len(b) for b in store.iter_items(batch_size=1)) == 2


def test_iter_events_filters_orders_and_erases(store: MongoEventStore) -> None:
    store.insert_events(
        [doc("late", minutes=30), doc("early", minutes=1), doc("mid", "u2", 10), doc("x", "u3", 20)]
    )
    got = [d["event_id"] for b in store.iter_events(batch_size=2) for d in b]
    assert got == ["early", "mid", "x", "late"]
    window = store.iter_events(
        since=T0 + timedelta(minutes=5), until=T0 + timedelta(minutes=30), exclude_users={"u3"}
    )
    batches = list(window)
    assert [d["event_id"] for b in batches for d in b] == ["mid"]
    assert batches[0][0]["ts"] == T0 + timedelta(minutes=10)  # tz-aware UTC
    assert store.count_events() == 4
    assert store.erase_user("u1") == 2
    assert store.erased_users() == {"u1"}
    assert store.count_events() == 2
    store.insert_events([doc("back", "u1", 40)])  # a user may come back after erasure
    assert store.count_events() == 3


@pytest.fixture(params=["mongo", "memory"])
def any_store(request: pytest.FixtureRequest, settings: Settings):
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    s = MongoEventStore.from_settings(settings.mongo)
    yield s
    s.close()


def test_stored_events_return_the_stored_content(any_store) -> None:
    first = {**doc("e1", offset=4), "properties": {"n": 1, "f": 1.0, "b": True}, "value": 2.5}
    any_store.insert_events([first])
    got = any_store.stored_events(["e1", "nope"])
    assert got["nope"] is None
    stored = got["e1"]
    assert stored["src"] == {"topic": "ev", "partition": 0, "offset": 4}
    assert content_key(stored) == content_key(first)
    assert content_key(stored) != content_key({**first, "properties": {"n": 1.0, "f": 1.0, "b": True}})
    assert "ingested_at" not in stored


def test_unstorable_documents_are_isolated_the_rest_stored(any_store) -> None:
    """What MongoDB refuses (client side: a NUL key, a 65-bit int; server side: over 16 MiB) costs
    only that document, through the consumer's isolation, on the real server and the twin alike."""
    docs = [
        doc("ok1", offset=0),
        {**doc("nul", offset=1), "properties": {"a\x00b": 1}},
        doc("ok2", offset=2),
        {**doc("huge_int", offset=3), "properties": {"n": 2**64}},
        {**doc("too_big", offset=4), "properties": {"s": "x" * (16 * 1024 * 1024)}},
        doc("ok3", offset=5),
    ]
    out = insert_isolating(any_store, docs)
    assert out.inserted | {"ok1", "ok2", "ok3"} == {"ok1", "ok2", "ok3"}  # some may come back as dups
    assert set(out.rejected) == {"nul", "huge_int", "too_big"}
    assert "NUL" in out.rejected["nul"] or "NULL" in out.rejected["nul"]
    assert "8-byte ints" in out.rejected["huge_int"]
    assert "large" in out.rejected["too_big"]
    found = any_store.stored_events(["ok1", "ok2", "ok3", "nul", "huge_int", "too_big"])
    assert {i for i, d in found.items() if d is not None} == {"ok1", "ok2", "ok3"}


def test_unstorable_item_update_fails_alone(any_store) -> None:
    updates = [
        {"item_id": "i1", "title": "first"},
        {"item_id": "big", "title": "x" * (16 * 1024 * 1024)},
        {"item_id": "i1", "title": "last"},
    ]
    failed = bisect_apply(updates, lambda part: any_store.upsert_items(list(part)))
    assert [u["item_id"] for u, _ in failed] == ["big"]
    assert "large" in failed[0][1]
    assert set(any_store.get_items(["i1", "big"])) == {"i1"}
    assert any_store.get_items(["i1"])["i1"]["title"] == "last"


def test_stored_event_ids_and_event_ids(any_store) -> None:
    any_store.insert_events([doc("e1"), doc("e2", offset=1), doc("e3", offset=2)])
    assert any_store.stored_event_ids(["e3", "nope", "e1", "e1"]) == {"e1", "e3"}
    assert any_store.stored_event_ids([]) == set()
    assert sorted(any_store.event_ids(batch_size=2)) == ["e1", "e2", "e3"]


def test_recent_users_are_distinct_newest_first(any_store) -> None:
    any_store.insert_events(
        [doc("a", "u1", 0), doc("b", "u2", 1), doc("c", "u1", 2), doc("d", "u3", 3), doc("e", "u4", 4)]
    )
    assert any_store.recent_users(3) == ["u4", "u3", "u1"]
    assert any_store.recent_users(10, scan=3) == ["u4", "u3", "u1"]  # only the 3 newest events
    assert any_store.recent_users(10) == ["u4", "u3", "u1", "u2"]
