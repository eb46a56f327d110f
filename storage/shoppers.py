"""Stored shopper attributes (collection ``users``): the port and its in-memory twin.

One document per shopper, ``{_id: user_id, attributes: {...}, updated_at}``; a PUT replaces the
attributes as a whole. Serving writes and reads them, retrain reads one attribute of every shopper
(the segment popularity is computed per value), and the erasure path deletes the document.
The MongoDB adapter is ``storage.shoppers_mongo.MongoShopperStore``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

COLLECTION = "users"


@dataclass(frozen=True)
class ShopperRecord:
    user_id: str
    attributes: dict[str, Any]
    updated_at: datetime


class ShopperStore(Protocol):
    def put_attributes(self, user_id: str, attributes: dict[str, Any], now: datetime) -> ShopperRecord:
        """Store ``attributes`` as the shopper's whole attribute set (replacing what was there)."""

    def get_attributes(self, user_id: str) -> ShopperRecord | None:
        """The shopper's stored attributes, or None when none were ever stored (or they were erased)."""

    def attribute_values(self, name: str) -> dict[str, Any]:
        """user id -> the value of attribute ``name``, for every shopper that has it non-null."""

    def erase_user(self, user_id: str) -> int:
        """Delete the shopper's attributes (right to erasure); returns how many documents went (0 or 1)."""


@dataclass
class InMemoryShopperStore:
    docs: dict[str, ShopperRecord] = field(default_factory=dict)

    def put_attributes(self, user_id: str, attributes: dict[str, Any], now: datetime) -> ShopperRecord:
        record = ShopperRecord(user_id, dict(attributes), now)
        self.docs[user_id] = record
        return record

    def get_attributes(self, user_id: str) -> ShopperRecord | None:
        record = self.docs.get(user_id)
        return None if record is None else ShopperRecord(user_id, dict(record.attributes), record.updated_at)

    def attribute_values(self, name: str) -> dict[str, Any]:
        return {
            user: rec.attributes[name]
            for user, rec in self.docs.items()
            if rec.attributes.get(name) is not None
        }

    def erase_user(self, user_id: str) -> int:
        return 1 if self.docs.pop(user_id, None) is not None else 0
