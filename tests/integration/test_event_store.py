"""MongoEventStore against the real MongoDB-wire server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumer.batch import content_key
from consumer.isolate import bisect_apply, insert_isolating
from core.late_attribution import AttributionUpdate
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


def click_doc(eid: str, user: str = "u1", item: str = "i1", minutes: int = 0, **over: object) -> dict:
    return {
        **doc(eid, user, minutes),
        "item_id": item,
        "event_type": "click",
        "recommendation_id": None,
        **over,
    }


def credit(impression_id: str, by: str) -> dict:
    return {"impression_id": impression_id, "by": by, "position": 0, "impression_ts": T0}


def test_late_attribution_candidates_are_the_events_not_credited_by_id_in_scope(any_store) -> None:
    any_store.insert_events(
        [
            click_doc("plain", minutes=5, position=3, recommendation_id="r1"),
            click_doc("window", minutes=6, attribution=credit("w", "window")),
            click_doc("by-id", minutes=7, attribution=credit("r1", "id")),
            click_doc("other-user", "u2", minutes=5),
            click_doc("other-item", item="i9", minutes=5),
            {**click_doc("a-view", minutes=5), "event_type": "view"},
            click_doc("at-since", minutes=0),
            click_doc("at-until", minutes=30),
            click_doc("before", minutes=-1),
        ]
    )
    found = any_store.late_attribution_candidates(
        {"u1", "u3"}, {"i1", "i2"}, T0, T0 + timedelta(minutes=30), ["click", "purchase"]
    )
    by_id = {d["_id"]: d for d in found}
    assert set(by_id) == {"plain", "window", "at-since"}  # since inclusive, until exclusive
    plain = by_id["plain"]
    assert (plain["user_id"], plain["item_id"], plain["event_type"]) == ("u1", "i1", "click")
    assert (plain["recommendation_id"], plain["position"], plain["ts"]) == (
        "r1",
        3,
        T0 + timedelta(minutes=5),
    )
    assert "attribution" not in plain and by_id["window"]["attribution"]["impression_id"] == "w"
    assert any_store.late_attribution_candidates(set(), {"i1"}, T0, T0 + timedelta(hours=1), ["click"]) == []


def test_set_attribution_writes_only_over_the_state_it_replaces(any_store) -> None:
    any_store.insert_events(
        [
            click_doc("none"),
            click_doc("window", attribution=credit("w", "window")),
            click_doc("by-id", attribution=credit("r0", "id")),
            click_doc("moved-meanwhile", attribution=credit("w2", "window")),
        ]
    )
    updates = [
        AttributionUpdate("none", "click", credit("r1", "window"), None),
        AttributionUpdate("window", "click", credit("r1", "id"), "w"),  # by id replaces any window
        AttributionUpdate("by-id", "click", credit("r9", "id"), None),  # a credit by id is final
        AttributionUpdate("moved-meanwhile", "click", credit("r3", "window"), "w"),  # expects w, finds w2
        AttributionUpdate("gone", "click", credit("r1", "window"), None),  # erased meanwhile
    ]
    assert any_store.set_attribution(updates) == 2
    stored = any_store.stored_events(["none", "window", "by-id", "moved-meanwhile", "gone"])
    assert stored["none"]["attribution"] == credit("r1", "window")
    assert stored["window"]["attribution"] == credit("r1", "id")
    assert stored["by-id"]["attribution"] == credit("r0", "id")
    assert stored["moved-meanwhile"]["attribution"] == credit("w2", "window")
    assert stored["gone"] is None
    assert any_store.set_attribution(updates) == 0  # idempotent: nothing changes the second time
    # A window credit moves where it still names the impression expected; none gets a window credit
    # over an existing one.
    again = [
        AttributionUpdate("moved-meanwhile", "click", credit("r3", "window"), "w2"),
        AttributionUpdate("none", "click", credit("r4", "window"), None),
    ]
    assert any_store.set_attribution(again) == 1
    assert (
        any_store.stored_events(["moved-meanwhile"])["moved-meanwhile"]["attribution"]["impression_id"]
        == "r3"
    )
    assert any_store.set_attribution([]) == 0


def test_retrain_reads_only_the_projected_fields_in_cursor_batches(any_store) -> None:
    """The same contract on the real server and the twin: the projection retrain asks for, in batches,
    in ts order, erased users out; and the read folds them into the same table on both."""
    from retrain.event_source import READ_FIELDS, read_window

    any_store.insert_events(
        [
            {**doc(f"e{n}", f"u{n % 3}", minutes=n, offset=n), "properties": {"price": 1.0}}
            for n in range(25, 0, -1)
        ]
    )
    batches = list(any_store.iter_events(exclude_users={"u2"}, batch_size=4, fields=READ_FIELDS))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 1]
    flat = [d for b in batches for d in b]
    assert all(set(d) == set(READ_FIELDS) for d in flat)
    assert [d["ts_ms"] for d in flat] == sorted(d["ts_ms"] for d in flat)
    assert {d["user_id"] for d in flat} == {"u0", "u1"}
    table = read_window(any_store, T0 + timedelta(minutes=3), T0 + timedelta(minutes=20), {"u2"})
    assert table.user_id.tolist() == [f"u{n % 3}" for n in range(3, 20) if n % 3 != 2]
    assert table.ts_ms.tolist() == [
        int((T0 + timedelta(minutes=n)).timestamp() * 1000) for n in range(3, 20) if n % 3 != 2
    ]


def test_latest_event_before_and_a_sliced_read(any_store) -> None:
    """What is older than a time, and the window read in time slices gives the one-query table."""
    from retrain.event_source import read_window

    assert any_store.latest_event_time_before(T0 + timedelta(days=1)) is None
    any_store.insert_events([doc(f"e{n}", f"u{n % 3}", minutes=n, offset=n) for n in range(30, 4, -1)])
    assert any_store.latest_event_time_before(T0 + timedelta(minutes=12)) == T0 + timedelta(minutes=11)
    assert any_store.latest_event_time_before(T0 + timedelta(minutes=5)) is None
    whole = read_window(any_store, None, T0 + timedelta(minutes=40), set(), timedelta(days=1))
    sliced = read_window(any_store, None, T0 + timedelta(minutes=40), set(), timedelta(minutes=4))
    closed = read_window(any_store, T0, T0 + timedelta(minutes=40), set(), timedelta(minutes=4))
    assert sliced.ts_ms.tolist() == whole.ts_ms.tolist() == closed.ts_ms.tolist() and len(whole) == 26
    assert sliced.user_id.tolist() == whole.user_id.tolist() == closed.user_id.tolist()
