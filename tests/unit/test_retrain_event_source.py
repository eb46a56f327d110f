"""Retrain's streaming read: projected fields, cursor batches folded into compact columns as they arrive."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from retrain.event_source import READ_FIELDS, EventColumns, read_window, to_event_table
from storage.event_store_memory import InMemoryEventStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _doc(n: int, user: str, item: str, kind: str = "view", value: float | None = None) -> dict[str, Any]:
    ts = T0 + timedelta(minutes=n)
    return {
        "_id": f"e{n}",
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "ts": ts,
        "ts_ms": int(ts.timestamp() * 1000),
        "value": value,
        "session_id": f"s{n}",
        "properties": {"price": 9.5},
        "src": {"topic": "t", "partition": 0, "offset": n},
        "ingested_at": ts,
    }


class Spy:
    """An event source that records what it was asked for and counts the batches it handed out."""

    def __init__(self, store: InMemoryEventStore) -> None:
        self.store = store
        self.calls: list[dict[str, Any]] = []
        self.batches = 0
        self.largest = 0

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        self.calls.append({"batch_size": batch_size, "fields": fields})
        for batch in self.store.iter_events(since, until, exclude_users, 7, fields):
            self.batches += 1
            self.largest = max(self.largest, len(batch))
            yield batch

    def erased_users(self) -> set[str]:
        return self.store.erased_users()

    def count_events(self) -> int:
        return self.store.count_events()


@pytest.fixture
def store() -> InMemoryEventStore:
    s = InMemoryEventStore()
    rng = np.random.default_rng(1)
    docs = [
        _doc(
            n,
            f"u{int(rng.integers(6))}",
            f"i{int(rng.integers(9))}",
            ("view", "purchase", "rate")[n % 3],
            float(n % 5) if n % 3 == 2 else None,
        )
        for n in range(40)
    ]
    s.insert_events(docs)
    return s


def test_the_window_is_read_in_batches_of_only_the_needed_fields(store: InMemoryEventStore) -> None:
    spy = Spy(store)
    table = read_window(spy, T0 + timedelta(minutes=5), T0 + timedelta(minutes=35), {"u0"})
    assert spy.calls[0]["fields"] == READ_FIELDS and "properties" not in READ_FIELDS
    assert spy.batches >= 3 and spy.largest <= 7
    expected = [
        d
        for d in sorted(store.events.values(), key=lambda d: d["ts"])
        if 5 <= int(d["_id"][1:]) < 35 and d["user_id"] != "u0"
    ]
    assert table.user_id.tolist() == [d["user_id"] for d in expected]
    assert table.item_id.tolist() == [d["item_id"] for d in expected]
    assert table.event_type.tolist() == [d["event_type"] for d in expected]
    assert table.ts_ms.tolist() == [d["ts_ms"] for d in expected]
    want_values = [np.nan if d["value"] is None else d["value"] for d in expected]
    np.testing.assert_array_equal(table.value, np.array(want_values))


def test_projection_leaves_out_what_retrain_does_not_read(store: InMemoryEventStore) -> None:
    batch = next(store.iter_events(fields=READ_FIELDS))
    assert set(batch[0]) == set(READ_FIELDS)
    full = next(store.iter_events())
    assert full[0]["event_id"] == "e0" and "properties" in full[0]


def test_columns_hold_codes_and_drop_erased_users_and_incomplete_events() -> None:
    columns = EventColumns({"gone"})
    columns.add([{"user_id": "a", "item_id": "x", "event_type": "view", "ts_ms": 1}])
    columns.add(
        [
            {"user_id": "gone", "item_id": "x", "event_type": "view", "ts_ms": 2},
            {"user_id": "b", "item_id": None, "event_type": "view", "ts_ms": 3},
            {"user_id": "b", "item_id": "x", "event_type": "rate", "value": 4, "ts": T0},
            {"user_id": "a", "item_id": "y", "event_type": "view", "ts_ms": 5},
        ]
    )
    assert columns.count == 3 and columns.skipped == 1
    # Each id is held once, as a code, however often it occurs.
    assert columns.users.codes == {"a": 0, "b": 1} and columns.items.codes == {"x": 0, "y": 1}
    table = columns.table()
    assert table.user_id.tolist() == ["a", "b", "a"]
    assert table.item_id.tolist() == ["x", "x", "y"]
    assert table.ts_ms.tolist() == [1, int(T0.timestamp() * 1000), 5]
    assert np.isnan(table.value[0]) and table.value[1] == 4.0


def test_an_event_without_any_timestamp_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no timestamp"):
        to_event_table([{"_id": "e9", "user_id": "a", "item_id": "x", "event_type": "view"}])


def test_nothing_read_is_an_empty_table() -> None:
    assert len(to_event_table([])) == 0
    assert len(read_window(Spy(InMemoryEventStore()), None, None, set())) == 0


class BoundedSpy(Spy):
    """A source that can say what is older than a time (as the event stores can)."""

    def __init__(self, store: InMemoryEventStore) -> None:
        super().__init__(store)
        self.windows: list[tuple[datetime | None, datetime | None]] = []

    def latest_event_time_before(self, when: datetime) -> datetime | None:
        return self.store.latest_event_time_before(when)

    def iter_events(self, since=None, until=None, exclude_users=(), batch_size=5000, fields=None):  # type: ignore[no-untyped-def]
        self.windows.append((since, until))
        return super().iter_events(since, until, exclude_users, batch_size, fields)


def _minutes(spy: BoundedSpy) -> list[tuple[int, int]]:
    def at(t: datetime | None) -> int:
        assert t is not None
        return int((t - T0).total_seconds() // 60)

    return [(at(a), at(b)) for a, b in spy.windows]


def test_the_window_is_read_in_consecutive_slices(store: InMemoryEventStore) -> None:
    whole = read_window(Spy(store), T0 + timedelta(minutes=5), T0 + timedelta(minutes=35), {"u0"})
    spy = BoundedSpy(store)
    sliced = read_window(
        spy, T0 + timedelta(minutes=5), T0 + timedelta(minutes=35), {"u0"}, timedelta(minutes=7)
    )
    assert _minutes(spy) == [(5, 12), (12, 19), (19, 26), (26, 33), (33, 35)]
    assert sliced.ts_ms.tolist() == whole.ts_ms.tolist()
    assert sliced.user_id.tolist() == whole.user_id.tolist()


def test_an_open_start_is_read_backwards_until_nothing_is_older(store: InMemoryEventStore) -> None:
    """Events at minutes 0-39, read from minute 60 back in 15-minute slices: the first slice is empty,
    so the read jumps to the slice ending just after the newest older event (39); the empty slice
    before minute 0, with nothing older, ends it."""
    whole = read_window(Spy(store), None, T0 + timedelta(hours=1), set())
    spy = BoundedSpy(store)
    table = read_window(spy, None, T0 + timedelta(hours=1), set(), timedelta(minutes=15))
    assert _minutes(spy) == [(45, 60), (24, 39), (9, 24), (-6, 9), (-21, -6)]
    assert table.ts_ms.tolist() == whole.ts_ms.tolist() == sorted(whole.ts_ms.tolist())
    assert table.user_id.tolist() == whole.user_id.tolist() and len(table) == 40
    plain = Spy(store)  # cannot say what is older: one query over the open window
    assert len(read_window(plain, None, T0 + timedelta(hours=1), set(), timedelta(minutes=15))) == 40
    assert len(plain.calls) == 1
    assert len(read_window(BoundedSpy(InMemoryEventStore()), None, T0, set())) == 0


def test_gaps_are_jumped_and_erased_users_events_do_not_end_the_read() -> None:
    store = InMemoryEventStore()
    store.insert_events([_doc(n, "gone" if n >= 200 else "u1", "i1") for n in (0, 1, 200, 201)])
    spy = BoundedSpy(store)
    table = read_window(spy, None, T0 + timedelta(minutes=300), {"gone"}, timedelta(minutes=30))
    # 270-300 is empty: the newest older event is at 201, so the next slice ends just after it; it
    # holds only the erased user's events, which the query leaves out, so it reads as empty too, but
    # what is older is asked of everything stored: the read jumps to minute 1; below 0 nothing is older.
    assert _minutes(spy) == [(270, 300), (171, 201), (-29, 1), (-59, -29)]
    assert table.user_id.tolist() == ["u1", "u1"]
