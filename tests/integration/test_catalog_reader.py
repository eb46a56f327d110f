"""Contract of ``storage.catalog_reader.CatalogReader``: MongoCatalogReader over items written by
MongoEventStore on the real MongoDB-wire server, and InMemoryCatalogReader over the event store's
twin, page and follow catalog changes the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from storage.catalog_reader import START, CatalogReader, InMemoryCatalogReader, MongoCatalogReader
from storage.event_store import MongoEventStore
from storage.event_store_memory import InMemoryEventStore


@dataclass
class Rig:
    store: Any
    reader: CatalogReader
    # Writes a raw item document with a chosen ``updated_at`` (a write committed out of stamp order).
    write_raw: Callable[[str, datetime], None]


@pytest.fixture(params=["mongo", "twin"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    if request.param == "twin":
        twin = InMemoryEventStore()

        def raw_twin(item_id: str, stamp: datetime) -> None:
            twin.items[item_id] = {"_id": item_id, "title": item_id, "updated_at": stamp}

        yield Rig(twin, InMemoryCatalogReader(twin.items), raw_twin)
        return
    settings = request.getfixturevalue("settings")
    store = MongoEventStore.from_settings(settings.mongo)
    reader = MongoCatalogReader.from_settings(settings.mongo)
    reader.ensure_indexes()

    def raw_mongo(item_id: str, stamp: datetime) -> None:
        store.items.replace_one({"_id": item_id}, {"title": item_id, "updated_at": stamp}, upsert=True)

    try:
        yield Rig(store, reader, raw_mongo)
    finally:
        reader.close()
        store.close()


def read_all(reader: CatalogReader, cursor: Any, limit: int) -> tuple[list[dict[str, Any]], Any, int]:
    out: list[dict[str, Any]] = []
    calls = 0
    while True:
        docs, cursor = reader.changed_since(cursor, limit)
        calls += 1
        out.extend(docs)
        if len(docs) < limit:
            return out, cursor, calls


def test_pages_through_equal_timestamps_without_gaps_or_repeats(rig: Rig) -> None:
    # One upsert_items call stamps all five items with the same updated_at.
    rig.store.upsert_items(
        [
            {
                "item_id": f"i{n}",
                "title": f"T{n}",
                "category": "books",
                "price": 1.0 + n,
                "properties": {"brand": "acme"},
            }
            for n in range(5)
        ]
    )
    docs, _cursor, calls = read_all(rig.reader, START, limit=2)
    assert [d["item_id"] for d in docs] == ["i0", "i1", "i2", "i3", "i4"] and calls == 3
    assert len({d["updated_at"] for d in docs}) == 1
    first = docs[0]
    assert first["title"] == "T0" and first["category"] == "books" and first["price"] == 1.0
    assert first["properties"] == {"brand": "acme"} and first["updated_at"].tzinfo is not None


def test_follows_changes_and_rereads_the_overlap(rig: Rig) -> None:
    rig.store.upsert_items([{"item_id": "a", "title": "A"}])
    docs, cursor, _ = read_all(rig.reader, START, limit=100)
    assert [d["item_id"] for d in docs] == ["a"]
    rig.store.upsert_items([{"item_id": "b", "title": "B"}, {"item_id": "a", "price": 9.5}])
    docs, cursor, _ = read_all(rig.reader, cursor, limit=100)
    got = {d["item_id"]: d for d in docs}
    # "a" again within the overlap window, and its newest state; "b" is new.
    assert set(got) == {"a", "b"} and got["a"]["price"] == 9.5 and got["a"]["title"] == "A"


def test_a_write_committed_out_of_stamp_order_is_not_missed(rig: Rig) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    rig.write_raw("late", now - timedelta(days=1))
    rig.write_raw("newest", now)
    docs, cursor, _ = read_all(rig.reader, START, limit=100)
    assert [d["item_id"] for d in docs] == ["late", "newest"]
    # Stamped 2 s before the newest one already read, visible only now: inside the overlap.
    rig.write_raw("slow", now - timedelta(seconds=2))
    docs, cursor, _ = read_all(rig.reader, cursor, limit=100)
    assert [d["item_id"] for d in docs] == ["slow", "newest"]
    # Far older than the overlap: a stamp that old is not a write in flight, and is not read again.
    rig.write_raw("ancient", now - timedelta(hours=1))
    docs, _, _ = read_all(rig.reader, cursor, limit=100)
    assert [d["item_id"] for d in docs] == ["slow", "newest"]


def test_nothing_stored_reads_nothing(rig: Rig) -> None:
    docs, cursor = rig.reader.changed_since(START, 10)
    assert docs == [] and cursor == START


def test_twin_upsert_stamps_like_the_store() -> None:
    reader = InMemoryCatalogReader()
    reader.upsert("x", title="X")
    docs, _ = reader.changed_since(START)
    assert docs[0]["item_id"] == "x" and docs[0]["updated_at"].microsecond % 1000 == 0
