"""Catalog changes for serving: the port, the MongoDB adapter (collection ``items``) and the twin.

The consumer writes items with ``upsert_items`` (storage.event_store), which stamps ``updated_at``
with its own clock on every change. Serving keeps an in-process snapshot of the catalog
(serving.catalog) by calling ``changed_since`` in a loop:

- Pages are ordered by (``updated_at``, ``_id``) and continue strictly after the cursor, so a page
  boundary inside a run of equal timestamps neither skips nor repeats an item.
- When a call comes back with less than a full page (caught up), the returned cursor is rewound by
  ``overlap_s``: writers stamp ``updated_at`` before their write commits, so a write stamped
  slightly earlier than one already read can become visible later. The next poll reads that window
  again; readers drop what they already hold by comparing ``updated_at`` (serving.catalog does).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ASCENDING

from storage.mongo_collection import OwnedCollection

Doc = dict[str, Any]
COLLECTION = "items"
# Seconds re-read behind the newest seen ``updated_at`` once caught up: covers writes committed out
# of stamp order (a consumer batch takes well under a second to write) and small clock differences
# between consumer processes.
DEFAULT_OVERLAP_S = 5.0
DEFAULT_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class CatalogCursor:
    """Where the next read starts: strictly after (updated_at, item_id); (None, None) = the beginning."""

    updated_at: datetime | None = None
    item_id: str = ""


START = CatalogCursor()
_NEVER = datetime.min.replace(tzinfo=UTC)


class CatalogReader(Protocol):
    def changed_since(
        self, cursor: CatalogCursor, limit: int = DEFAULT_PAGE
    ) -> tuple[list[Doc], CatalogCursor]:
        """Item documents (``item_id`` set, ``updated_at`` timezone-aware) after ``cursor``, at most
        ``limit``, oldest change first, and the cursor to pass next. A full page means more may
        follow at once; a short one means caught up (the cursor is then rewound by the overlap)."""

    def ensure_indexes(self) -> None:
        """The (updated_at, _id) index that keeps a poll cheap on a large catalog."""


def _aware(stamp: Any) -> datetime:
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    # An item stored without ``updated_at``: it sorts first (MongoDB sorts a missing field first too).
    return _NEVER


def next_cursor(docs: list[Doc], cursor: CatalogCursor, limit: int, overlap_s: float) -> CatalogCursor:
    """Exact continuation after a full page; once caught up, the newest stamp minus the overlap."""
    if not docs:
        return cursor
    last = docs[-1]
    if len(docs) >= limit:
        return CatalogCursor(last["updated_at"], last["item_id"])
    newest: datetime = last["updated_at"]
    if newest - _NEVER < timedelta(seconds=overlap_s):
        return cursor  # only items without a stamp so far
    return CatalogCursor(newest - timedelta(seconds=overlap_s), "")


def _as_doc(raw: Mapping[str, Any]) -> Doc:
    doc = dict(raw)
    doc["item_id"] = doc["_id"]
    doc["updated_at"] = _aware(doc.get("updated_at"))
    return doc


class MongoCatalogReader(OwnedCollection):
    collection_name = COLLECTION

    def __init__(self, database: Any, overlap_s: float = DEFAULT_OVERLAP_S) -> None:
        super().__init__(database)
        self.overlap_s = overlap_s

    def ensure_indexes(self) -> None:
        self._collection.create_index([("updated_at", ASCENDING), ("_id", ASCENDING)], name="updated_id")

    def changed_since(
        self, cursor: CatalogCursor, limit: int = DEFAULT_PAGE
    ) -> tuple[list[Doc], CatalogCursor]:
        query: Doc = {}
        if cursor.updated_at is not None:
            stamp = cursor.updated_at
            query = {
                "$or": [{"updated_at": {"$gt": stamp}}, {"updated_at": stamp, "_id": {"$gt": cursor.item_id}}]
            }
        found = (
            self._collection.find(query, batch_size=min(limit, DEFAULT_PAGE))
            .sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        docs = [_as_doc(d) for d in found]
        return docs, next_cursor(docs, cursor, limit, self.overlap_s)


def _millis(stamp: datetime) -> datetime:
    """MongoDB keeps milliseconds: the twin stores what the server would give back."""
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


class InMemoryCatalogReader:
    """The same reads over a dict of item documents (``InMemoryEventStore.items``, which stamps
    ``updated_at`` as the MongoDB adapter does, or a dict of its own filled with ``upsert``)."""

    def __init__(self, items: dict[str, Doc] | None = None, overlap_s: float = DEFAULT_OVERLAP_S) -> None:
        self.items: dict[str, Doc] = {} if items is None else items
        self.overlap_s = overlap_s
        self.fail_with: Exception | None = None

    def upsert(self, item_id: str, **fields: Any) -> None:
        """Set fields of one item and stamp ``updated_at`` now, as ``upsert_items`` does."""
        doc = self.items.setdefault(item_id, {"_id": item_id})
        doc.update(fields)
        doc["updated_at"] = _millis(datetime.now(UTC))

    def ensure_indexes(self) -> None:
        return None

    def changed_since(
        self, cursor: CatalogCursor, limit: int = DEFAULT_PAGE
    ) -> tuple[list[Doc], CatalogCursor]:
        if self.fail_with is not None:
            raise self.fail_with
        docs = sorted(
            (_as_doc(d) for d in list(self.items.values())), key=lambda d: (d["updated_at"], d["item_id"])
        )
        if cursor.updated_at is not None:
            after = (cursor.updated_at, cursor.item_id)
            docs = [d for d in docs if (d["updated_at"], d["item_id"]) > after]
        docs = docs[:limit]
        return docs, next_cursor(docs, cursor, limit, self.overlap_s)
