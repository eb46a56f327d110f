"""serving.catalog.CatalogSnapshot over the catalog reader's twin: load, follow, notify."""

from __future__ import annotations

import asyncio
import contextlib

from serving.catalog import CatalogChange, CatalogSnapshot, ItemMeta
from storage.catalog_reader import InMemoryCatalogReader
from storage.event_store_memory import InMemoryEventStore


def test_loads_pages_and_reads_metadata() -> None:
    store = InMemoryEventStore()
    store.upsert_items(
        [
            {"item_id": f"i{n}", "title": f"T{n}", "category": "books", "price": n, "available": n != 2}
            for n in range(7)
        ]
        + [{"item_id": "i0", "properties": {"brand": "Acme", "colour": "red"}}]
    )
    snap = CatalogSnapshot(InMemoryCatalogReader(store.items), page=3)
    change = asyncio.run(snap.refresh())
    assert change is not None and change.added == frozenset(f"i{n}" for n in range(7))
    assert len(snap) == 7 and snap.loaded and snap.version == 1
    meta = snap.get("i0")
    assert meta is not None and meta.brand == "Acme" and meta.value("colour") == "red"
    assert meta.value("brand") == "Acme" and meta.value("price") == 0.0 and meta.title == "T0"
    assert snap.get("i2").available is False  # type: ignore[union-attr]
    assert snap.get("nope") is None


def test_follows_changes_notifies_and_ignores_the_overlap() -> None:
    reader = InMemoryCatalogReader()
    reader.upsert("a", title="A", category="c1")
    snap = CatalogSnapshot(reader)
    seen: list[CatalogChange] = []
    snap.subscribe(seen.append)

    async def go() -> None:
        await snap.refresh()
        # Nothing changed: the overlap re-reads "a", which is dropped (no change, no notification).
        assert await snap.refresh() is None
        reader.upsert("b", title="B")
        reader.upsert("a", price=3.0)
        await snap.refresh()

    asyncio.run(go())
    assert [c.added for c in seen] == [frozenset({"a"}), frozenset({"b"})]
    assert {m.item_id for m in seen[1].items} == {"a", "b"} and snap.version == 2
    a = snap.get("a")
    assert a is not None and a.price == 3.0 and a.category == "c1"


def test_a_failing_subscriber_or_read_keeps_the_snapshot() -> None:
    reader = InMemoryCatalogReader()
    reader.upsert("a", title="A")
    snap = CatalogSnapshot(reader)

    def broken(_change: CatalogChange) -> None:
        raise RuntimeError("boom")

    unsubscribe = snap.subscribe(broken)

    async def go() -> None:
        await snap.refresh()
        reader.fail_with = ConnectionError("down")
        task = asyncio.create_task(snap.run(0.01))
        await asyncio.sleep(0.05)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert snap.get("a") is not None
    unsubscribe()


def test_item_meta_without_properties() -> None:
    meta = ItemMeta.from_doc({"item_id": "x", "price": 2})
    assert meta.brand is None and meta.value("size") is None and meta.price == 2.0


def test_a_second_write_in_the_same_millisecond_is_taken_a_repeat_is_not() -> None:
    from datetime import UTC, datetime

    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    snap = CatalogSnapshot(InMemoryCatalogReader())
    assert snap.apply([ItemMeta("a", price=1.0, updated_at=stamp)]) is not None
    assert snap.apply([ItemMeta("a", price=1.0, updated_at=stamp)]) is None
    change = snap.apply([ItemMeta("a", price=2.0, updated_at=stamp)])
    assert change is not None and change.added == frozenset() and snap.get("a").price == 2.0  # type: ignore[union-attr]
