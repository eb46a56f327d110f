"""The MongoDB adapter of ``storage.shoppers.ShopperStore`` (collection ``users``, ``_id`` = user id)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from storage.mongo_collection import OwnedCollection
from storage.shoppers import COLLECTION, ShopperRecord


class MongoShopperStore(OwnedCollection):
    collection_name = COLLECTION

    def put_attributes(self, user_id: str, attributes: dict[str, Any], now: datetime) -> ShopperRecord:
        # A whole-document replace: a PUT drops attributes the new body no longer has.
        doc = {"_id": user_id, "attributes": dict(attributes), "updated_at": now}
        self._collection.replace_one({"_id": user_id}, doc, upsert=True)
        return ShopperRecord(user_id, dict(attributes), now)

    def get_attributes(self, user_id: str) -> ShopperRecord | None:
        doc = self._collection.find_one({"_id": user_id})
        if doc is None:
            return None
        updated = doc.get("updated_at")
        if isinstance(updated, datetime) and updated.tzinfo is None:
            updated = updated.replace(tzinfo=UTC)
        return ShopperRecord(user_id, dict(doc.get("attributes") or {}), updated)

    def attribute_values(self, name: str) -> dict[str, Any]:
        # ``name`` is model.segment_attribute, validated in core.settings (no '.', no leading '$').
        path = f"attributes.{name}"
        found = self._collection.find({path: {"$ne": None}}, {path: 1}, batch_size=10_000)
        return {str(doc["_id"]): doc["attributes"][name] for doc in found}

    def erase_user(self, user_id: str) -> int:
        return int(self._collection.delete_one({"_id": user_id}).deleted_count)
