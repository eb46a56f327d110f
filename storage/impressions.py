"""Stored impressions (what serving showed): the port and its in-memory twin.

The consumer writes them (idempotent by ``_id`` = impression id) and reads them back to attribute
events; reports read them by time. Documents are ``core.impressions.impression_document``.
The MongoDB adapter is ``storage.impressions_mongo.MongoImpressionStore``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

COLLECTION = "impressions"


class ImpressionStore(Protocol):
    def ensure_indexes(self, retention_s: float) -> None:
        """TTL index on ``ts`` (expireAfterSeconds = retention_s), (user_id, ts) for window attribution."""

    def insert_impressions(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        """Store new impressions; an ``_id`` already stored is kept as it is. Returns the ids inserted now."""

    def impressions_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The stored impressions among ``ids`` (explicit attribution)."""

    def recent_for_users(self, user_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
        """Live (non-shadow) impressions of these shoppers with ``ts >= since`` (window attribution)."""

    def impressions_since(self, since: datetime, *, shadow: bool | None = False) -> Iterator[dict[str, Any]]:
        """Impressions with ``ts >= since`` (shadow: False live only, True shadow only, None both)."""

    def erase_user(self, user_id: str) -> int:
        """Delete one shopper's impressions (right to erasure); returns how many."""


@dataclass
class InMemoryImpressionStore:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    retention_s: float | None = None

    def ensure_indexes(self, retention_s: float) -> None:
        self.retention_s = retention_s

    def insert_impressions(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        new: set[str] = set()
        for doc in docs:
            key = str(doc["_id"])
            if key not in self.docs:
                self.docs[key] = dict(doc)
                new.add(key)
        return new

    def impressions_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {i: dict(self.docs[i]) for i in ids if i in self.docs}

    def recent_for_users(self, user_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
        users = set(user_ids)
        return [
            dict(d)
            for d in self.docs.values()
            if d.get("user_id") in users and d["ts"] >= since and not d.get("shadow")
        ]

    def impressions_since(self, since: datetime, *, shadow: bool | None = False) -> Iterator[dict[str, Any]]:
        for d in sorted(self.docs.values(), key=lambda d: d["ts"]):
            if d["ts"] >= since and (shadow is None or bool(d.get("shadow")) == shadow):
                yield dict(d)

    def erase_user(self, user_id: str) -> int:
        gone = [k for k, d in self.docs.items() if d.get("user_id") == user_id]
        for k in gone:
            del self.docs[k]
        return len(gone)
