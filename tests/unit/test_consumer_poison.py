"""Poison records against the batch processor and its in-memory twins: nothing crashes, nothing is lost.

Every record of a batch ends stored once or dead-lettered once with a reason code; a record the
store cannot hold (a gap in the schema) is isolated and dead-lettered as ``unstorable``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pymongo.errors import AutoReconnect

from consumer.batch import RawMessage
from consumer.isolate import bisect_apply
from consumer.processor import SinkUnavailable
from tests.unit.test_consumer_processor import NOW_S, Rig, ev, item


def codes(rig: Rig) -> list[tuple[int, str]]:
    return [(int(dict(h)["source_offset"]), dict(h)["error_code"].decode()) for _, _, h in rig.dlq.records]


def raw(offset: int, body: bytes) -> RawMessage:
    return RawMessage("ev", 0, offset, b"pu1", body)


ISSUE_RECORDS = [
    b'{"event_id":"c1","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1714564700000}',
    b'{"event_id":"c2","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1714564700000,'
    b'"properties":{"a\\u0000b":1}}',
    b'{"event_id":"c3","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1714564700000,'
    b'"properties":{"n":18446744073709551615}}',
    b'{"event_id":"c4","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1714564700000,'
    b'"properties":{"$where":"sleep(1000)"}}',
    b'{"event_id":"c5","event_type":"click","user_id":"p\\u0000u1","item_id":"i1","timestamp":1714564700000}',
    b'{"event_id":"c6","event_type":"click","user_id":"pu1","item_id":"i2","timestamp":1714564700000}',
]


def test_the_six_records_of_the_issue() -> None:
    rig = Rig()
    out = rig.proc.process([raw(i, body) for i, body in enumerate(ISSUE_RECORDS)])
    assert set(rig.store.events) == {"c1", "c6"}
    assert codes(rig) == [
        (1, "invalid_key"),
        (2, "integer_out_of_range"),
        (3, "invalid_key"),
        (4, "control_character"),
    ]
    assert out.commit == {("ev", 0): 6}
    assert rig.state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0, "i2": 1.0}


def _reject_marked(doc: dict[str, Any]) -> str | None:
    return "Invalid document: cannot encode object" if str(doc.get("item_id", "")).startswith("bad") else None


@pytest.mark.parametrize("bad_offsets", [[0], [9], [3, 4], [0, 5, 9], list(range(10))])
def test_unstorable_events_are_isolated_and_the_rest_stored(bad_offsets: list[int]) -> None:
    rig = Rig()
    rig.store.unstorable = _reject_marked
    batch = [ev(f"e{i}", i, item=("bad" if i in bad_offsets else "ok") + str(i)) for i in range(10)]
    out = rig.proc.process(batch)
    good = {f"e{i}" for i in range(10) if i not in bad_offsets}
    assert set(rig.store.events) == good
    assert codes(rig) == [(i, "unstorable") for i in bad_offsets]
    reasons = [dict(h)["reason"].decode() for _, _, h in rig.dlq.records]
    assert all("InvalidDocument: Invalid document: cannot encode object" in r for r in reasons)
    assert out.commit == {("ev", 0): 10}
    # Effects only for what was stored, each once (the twin stores the docs before a bad one first).
    assert sum(rig.state.snapshot(NOW_S)["pop"]["all"].values()) == len(good)
    assert out.counts[("event", "dead_lettered")] == len(bad_offsets)


def test_unstorable_batch_redelivered_is_not_dead_lettered_twice() -> None:
    rig = Rig()
    rig.store.unstorable = _reject_marked
    batch = [ev("e0", 0), ev("e1", 1, item="bad"), ev("e2", 2)]
    rig.proc.process(batch)
    before = rig.state.snapshot(NOW_S)
    rig.proc.process(batch)  # the commit was lost: the same records come again
    assert codes(rig) == [(1, "unstorable")]
    assert rig.state.snapshot(NOW_S) == before


def test_an_outage_during_isolation_still_retries_the_whole_batch() -> None:
    rig = Rig()
    calls = {"n": 0}

    def flaky(doc: dict[str, Any]) -> str | None:
        calls["n"] += 1
        if calls["n"] > 3:
            rig.store.fail_with = AutoReconnect("connection reset")
        return _reject_marked(doc)

    rig.store.unstorable = flaky
    batch = [ev(f"e{i}", i, item="bad" if i == 5 else "ok") for i in range(8)]
    with pytest.raises(SinkUnavailable) as err:
        rig.proc.process(batch)
    assert err.value.sink == "mongo" and rig.dlq.records == []
    rig.store.fail_with = None
    rig.store.unstorable = _reject_marked
    out = rig.proc.process(batch)
    assert set(rig.store.events) == {f"e{i}" for i in range(8)} - {"e5"}
    assert codes(rig) == [(5, "unstorable")]
    assert out.commit == {("ev", 0): 8}
    assert sum(rig.state.snapshot(NOW_S)["pop"]["all"].values()) == 7


def test_unstorable_item_update_is_isolated_and_order_kept() -> None:
    rig = Rig()
    rig.store.unstorable = lambda doc: "too large" if doc.get("title") == "huge" else None
    out = rig.proc.process(
        [
            item("i1", 0, title="first", category="c1"),
            item("i2", 1, title="huge"),
            item("i1", 2, title="last"),
            item("i3", 3, title="ok", category="c3"),
        ]
    )
    assert rig.store.items["i1"]["title"] == "last"
    assert "i2" not in rig.store.items and rig.store.items["i3"]["title"] == "ok"
    assert [(int(dict(h)["source_offset"]), dict(h)["error_code"]) for _, _, h in rig.dlq.records] == [
        (1, b"unstorable")
    ]
    assert out.commit == {("it", 0): 4}
    assert out.counts[("item", "dead_lettered")] == 1


def test_conflicting_duplicate_is_dead_lettered_and_the_stored_version_kept() -> None:
    rig = Rig()
    rig.proc.process([ev("e1", 0, item="i1")])
    out = rig.proc.process([ev("e1", 1, item="i1"), ev("e1", 2, item="i2"), ev("e9", 3)])
    assert rig.store.events["e1"]["item_id"] == "i1"
    assert rig.store.events["e1"]["src"]["offset"] == 0
    assert codes(rig) == [(2, "conflicting_duplicate")]
    assert out.counts[("view", "duplicate")] == 1  # the identical re-send stays a counted duplicate
    assert rig.state.snapshot(NOW_S)["pop"]["all"] == {"i1": 2.0}  # e1 once, e9 once
    rig.proc.process([ev("e1", 2, item="i2")])  # redelivered after a lost commit: not dead-lettered again
    assert len(rig.dlq.records) == 1


def test_conflict_within_one_batch() -> None:
    rig = Rig()
    rig.proc.process([ev("e1", 0, item="i1"), ev("e1", 1, item="i1"), ev("e1", 2, user="u2")])
    assert set(rig.store.events) == {"e1"}
    assert codes(rig) == [(2, "conflicting_duplicate")]


def test_bisect_finds_every_bad_record_and_keeps_order() -> None:
    applied: list[int] = []

    def apply(part: Any) -> None:
        if any(x % 7 == 3 for x in part):
            raise OverflowError("MongoDB can only handle up to 8-byte ints")
        applied.extend(part)

    rejected = bisect_apply(list(range(40)), apply)
    assert [x for x, _ in rejected] == [x for x in range(40) if x % 7 == 3]
    assert applied == [x for x in range(40) if x % 7 != 3]
    assert rejected[0][1] == "OverflowError: MongoDB can only handle up to 8-byte ints"


def test_bisect_lets_other_errors_through() -> None:
    def apply(_part: Any) -> None:
        raise AutoReconnect("down")

    with pytest.raises(AutoReconnect):
        bisect_apply([1, 2, 3], apply)


def test_garbage_of_every_kind_never_crashes_the_processor() -> None:
    rig = Rig()
    bodies = [
        b"",
        b"\x00",
        b"null",
        b"[]",
        b"{}",
        b'{"event_id": {"$gt": ""}}',
        orjson.dumps({"event_id": "x" * 129}),
        b'{"event_id":"e1","event_type":"view","user_id":"u","item_id":"i","timestamp":1e400}',
        b'{"event_id":"e1","event_type":"view","user_id":"u","item_id":"i","timestamp":"\\ud800"}',
        b"[" * 2000 + b"]" * 2000,
    ]
    out = rig.proc.process([raw(i, b) for i, b in enumerate(bodies)])
    assert len(rig.dlq.records) == len(bodies) and rig.store.events == {}
    assert out.commit == {("ev", 0): len(bodies)}


def test_event_erased_between_insert_and_lookup_is_inserted_again() -> None:
    rig = Rig()
    rig.proc.process([ev("e1", 0)])
    real_lookup = rig.store.stored_events

    def erased_meanwhile(ids: Any) -> Any:
        rig.store.erase_user("u1")  # an erasure lands between the insert and the lookup
        rig.store.stored_events = real_lookup  # type: ignore[method-assign]
        return real_lookup(ids)

    rig.store.stored_events = erased_meanwhile  # type: ignore[method-assign]
    out = rig.proc.process([ev("e1", 1)])
    assert rig.store.events["e1"]["src"]["offset"] == 1
    assert out.counts[("view", "stored")] == 1 and rig.dlq.records == []
