"""The catalog snapshot: item metadata held in process, refreshed from MongoDB every ``catalog_poll_s``.

Filters and merchandising rules read an item's title, category, brand, price, availability and
properties on every request, so they come from memory, never from a query. The snapshot is loaded
when serving starts and then follows ``storage.catalog_reader.CatalogReader.changed_since``; other
parts of serving (new-item embeddings) subscribe to the items that changed.

Cheap at 1M items: one small slotted record per item; each poll reads only what changed (plus the
reader's overlap window, dropped here by ``updated_at``); documents are turned into records in the
worker thread that read them, and the event loop only swaps records into the dict. The first load
builds a fresh dict in that thread and replaces the empty one in one assignment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from storage.catalog_reader import DEFAULT_PAGE, START, CatalogCursor, CatalogReader

log = logging.getLogger(__name__)
_EMPTY: Mapping[str, Any] = MappingProxyType({})
# Fields an item's metadata answers by name; anything else is looked up in ``properties``.
TOP_LEVEL = ("title", "category", "brand", "price", "available")


@dataclass(frozen=True, slots=True)
class ItemMeta:
    item_id: str
    title: str | None = None
    category: str | None = None
    # The event schema has no top-level brand: storefronts send it as ``properties.brand``.
    brand: str | None = None
    price: float | None = None
    # None: never said; serving treats only False as unavailable.
    available: bool | None = None
    properties: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    added_at: datetime | None = None
    updated_at: datetime | None = None

    def value(self, name: str) -> Any:
        """The value filters and rules compare: a top-level field, else the property of that name."""
        if name in TOP_LEVEL:
            return getattr(self, name)
        return self.properties.get(name)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ItemMeta:
        props = doc.get("properties") or {}
        brand = doc.get("brand", props.get("brand"))
        price = doc.get("price")
        return cls(
            item_id=str(doc["item_id"]),
            title=doc.get("title"),
            category=doc.get("category"),
            brand=None if brand is None else str(brand),
            price=None if price is None else float(price),
            available=doc.get("available"),
            properties=props if props else _EMPTY,
            added_at=_aware(doc.get("added_at")),
            updated_at=_aware(doc.get("updated_at")),
        )


def _aware(stamp: Any) -> datetime | None:
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True)
class CatalogChange:
    """What one refresh applied: every changed item's new metadata, and which of them are new."""

    items: tuple[ItemMeta, ...]
    added: frozenset[str]


Subscriber = Callable[[CatalogChange], Any]


class CatalogSnapshot:
    """item_id -> ``ItemMeta``; ``refresh`` (or ``run``) follows the reader."""

    def __init__(self, reader: CatalogReader, *, page: int = DEFAULT_PAGE) -> None:
        self.reader = reader
        self.page = page
        self._items: dict[str, ItemMeta] = {}
        self._cursor: CatalogCursor = START
        self._next_cursor: CatalogCursor = START
        self._subscribers: list[Subscriber] = []
        # Bumped by every refresh that changed something: what cached answers built from it key on.
        self.version = 0
        self.loaded = False
        # Every property key some item has had (filters refuse others: a typo would match nothing).
        self._property_names: set[str] = set()
        self._sample: tuple[float, list[str]] = (-1.0, [])

    # -- reads (event loop) --
    def get(self, item_id: str) -> ItemMeta | None:
        return self._items.get(item_id)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ItemMeta]:
        return iter(list(self._items.values()))

    def has_property(self, name: str) -> bool:
        return name in self._property_names

    def sample(self, n: int = 2000, max_age_s: float = 30.0) -> list[str]:
        """About ``n`` item ids spread over the catalog (redrawn at most every ``max_age_s``), for
        estimating which share of the catalog a filter keeps."""
        drawn_at, ids = self._sample
        now = time.monotonic()
        if now - drawn_at > max_age_s:
            keys = list(self._items)
            step = max(1, len(keys) // n)
            ids = keys[::step][:n]
            self._sample = (now, ids)
        return ids

    @property
    def items(self) -> Mapping[str, ItemMeta]:
        """A read-only view (do not hold it across an ``await``: a refresh may change it)."""
        return MappingProxyType(self._items)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(change)`` on the event loop after each refresh that changed items (the first
        load included: every item is then ``added``). Returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    # -- refresh --
    def _read_changes(self) -> list[ItemMeta]:
        """Blocking: every page up to now (runs in a worker thread)."""
        out: list[ItemMeta] = []
        cursor = self._cursor
        while True:
            docs, cursor = self.reader.changed_since(cursor, self.page)
            out.extend(ItemMeta.from_doc(d) for d in docs)
            if len(docs) < self.page:
                break
        self._next_cursor = cursor
        return out

    def _fresh(self, metas: Iterable[ItemMeta]) -> list[ItemMeta]:
        """Drop what is already held at that ``updated_at`` or newer (the reader's overlap)."""
        out = []
        for meta in metas:
            held = self._items.get(meta.item_id)
            # An equal stamp with other content: a second write within the same millisecond.
            if (
                held is None
                or _newer(meta.updated_at, held.updated_at)
                or (meta.updated_at == held.updated_at and meta != held)
            ):
                out.append(meta)
        return out

    def apply(self, metas: Iterable[ItemMeta]) -> CatalogChange | None:
        """Take these records (event loop); tell subscribers; None when nothing changed."""
        fresh = self._fresh(metas)
        if not fresh:
            return None
        if not self._items:
            # First load: one assignment instead of a million.
            self._items = {m.item_id: m for m in fresh}
            added = frozenset(self._items)
        else:
            added = frozenset(m.item_id for m in fresh if m.item_id not in self._items)
            for meta in fresh:
                self._items[meta.item_id] = meta
        for meta in fresh:
            self._property_names.update(meta.properties)
        self.version += 1
        change = CatalogChange(tuple(fresh), added)
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:
                log.exception("event=catalog_subscriber_failed")
        return change

    async def refresh(self) -> CatalogChange | None:
        metas = await asyncio.to_thread(self._read_changes)
        self._cursor = self._next_cursor
        change = self.apply(metas)
        if not self.loaded:
            self.loaded = True
            log.info("event=catalog_loaded items=%d", len(self._items))
        return change

    async def run(self, interval_s: float) -> None:
        """Refresh every ``interval_s`` until cancelled; a failed read keeps the last snapshot."""
        try:
            await asyncio.to_thread(self.reader.ensure_indexes)
        except Exception as exc:
            log.warning("event=catalog_index_failed error=%s", exc)
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event=catalog_refresh_failed error=%s", exc)
            await asyncio.sleep(interval_s)


def _newer(stamp: datetime | None, held: datetime | None) -> bool:
    if stamp is None:
        return False  # no stamp to tell by: what is held stays
    return held is None or stamp > held
