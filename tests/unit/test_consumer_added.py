"""First-seen times of catalog items (core.keys ``added``): set once, from MongoDB, rebuilt the same."""

from __future__ import annotations

import orjson

from consumer.batch import RawMessage
from consumer.rebuild import diff_snapshots, rebuild_cache
from storage.realtime_state import InMemoryRealtimeState
from tests.unit.test_consumer_processor import NOW_S, Rig

NOW_MS = int(NOW_S * 1000)


def update(iid: str, offset: int, ts_ms: int | None, **fields: object) -> RawMessage:
    return RawMessage("it", 0, offset, iid.encode(), orjson.dumps({"item_id": iid, **fields}), ts_ms)


def test_the_first_update_sets_the_time_and_later_ones_or_redeliveries_never_move_it() -> None:
    rig = Rig()
    first = update("i1", 0, NOW_MS - 5000, title="Mug", category="kitchen")
    rig.proc.process([first, update("i1", 1, NOW_MS - 4000, price=3.0)])
    assert rig.state.snapshot(NOW_S)["added"] == {"i1": NOW_MS - 5000}
    rig.proc.process([update("i1", 2, NOW_MS - 1000, available=False)])
    rig.proc.process([first])  # a redelivery: applied offsets skip it, MongoDB keeps the time anyway
    assert rig.state.snapshot(NOW_S)["added"] == {"i1": NOW_MS - 5000}
    assert rig.store.get_items(["i1"])["i1"]["added_at"].timestamp() * 1000 == NOW_MS - 5000


def test_records_without_a_usable_timestamp_take_the_consumer_clock() -> None:
    rig = Rig()
    rig.proc.process([update("a", 0, None, title="A"), update("b", 1, NOW_MS + 3_600_000, title="B")])
    assert rig.state.snapshot(NOW_S)["added"] == {"a": NOW_MS, "b": NOW_MS}


def test_items_stored_before_first_seen_times_existed_are_not_new() -> None:
    rig = Rig()
    rig.store.items["old"] = {"_id": "old", "title": "Old"}  # stored by an earlier version
    rig.proc.process([update("old", 0, NOW_MS, price=1.0), update("new", 1, NOW_MS, title="New")])
    assert rig.state.snapshot(NOW_S)["added"] == {"new": NOW_MS}


def test_rebuild_recreates_the_added_set() -> None:
    rig = Rig()
    rig.proc.process([update(f"i{n}", n, NOW_MS - n * 1000, category="c") for n in range(5)])
    rebuilt = InMemoryRealtimeState("sr:")
    rebuild_cache(rig.settings, rig.store, rebuilt, now_s=NOW_S)
    assert rebuilt.snapshot(NOW_S)["added"] == {f"i{n}": NOW_MS - n * 1000 for n in range(5)}
    assert diff_snapshots(rig.state.snapshot(NOW_S), rebuilt.snapshot(NOW_S)) == []


class FakeMessage:
    def __init__(self, timestamp: tuple[int, int]) -> None:
        self._ts = timestamp

    def topic(self) -> str:
        return "it"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 9

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return self._ts


def test_to_raw_keeps_the_kafka_timestamp_when_there_is_one() -> None:
    from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE

    from consumer.kafka_records import to_raw

    raw = to_raw(FakeMessage((TIMESTAMP_CREATE_TIME, 1_714_564_800_123)))  # type: ignore[arg-type]
    assert (raw.topic, raw.partition, raw.offset, raw.ts_ms) == ("it", 2, 9, 1_714_564_800_123)
    assert to_raw(FakeMessage((TIMESTAMP_NOT_AVAILABLE, 0))).ts_ms is None  # type: ignore[arg-type]
    assert to_raw(FakeMessage((TIMESTAMP_CREATE_TIME, -1))).ts_ms is None  # type: ignore[arg-type]
