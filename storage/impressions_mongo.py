"""The MongoDB adapter of ``storage.impressions.ImpressionStore`` (collection ``impressions``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, OperationFailure

from storage.impressions import COLLECTION
from storage.mongo_collection import OwnedCollection

DUPLICATE_KEY = 11000
TTL_INDEX = "ts_ttl"


class MongoImpressionStore(OwnedCollection):
    collection_name = COLLECTION

    def ensure_indexes(self, retention_s: float) -> None:
        seconds = max(1, int(retention_s))
        try:
            self._collection.create_index([("ts", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=seconds)
        except OperationFailure:
            # The retention setting changed: an index's options cannot be altered in place on every
            # server version, so it is rebuilt (the data stays; only the expiry rule changes).
            self._collection.drop_index(TTL_INDEX)
            self._collection.create_index([("ts", ASCENDING)], name=TTL_INDEX, expireAfterSeconds=seconds)
        self._collection.create_index([("user_id", ASCENDING), ("ts", ASCENDING)], name="user_ts")

    def insert_impressions(self, docs: Sequence[dict[str, Any]]) -> set[str]:
        if not docs:
            return set()
        try:
            self._collection.insert_many(list(docs), ordered=False)
            return {str(d["_id"]) for d in docs}
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            dup = {int(e["index"]) for e in errors}
            return {str(d["_id"]) for i, d in enumerate(docs) if i not in dup}

    def impressions_by_id(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        return {str(d["_id"]): d for d in self._collection.find({"_id": {"$in": wanted}})}

    def recent_for_users(self, user_ids: Iterable[str], since: datetime) -> list[dict[str, Any]]:
        users = list(dict.fromkeys(user_ids))
        if not users:
            return []
        query = {"user_id": {"$in": users}, "ts": {"$gte": since}, "shadow": {"$ne": True}}
        return list(self._collection.find(query))

    def impressions_since(self, since: datetime, *, shadow: bool | None = False) -> Iterator[dict[str, Any]]:
        query: dict[str, Any] = {"ts": {"$gte": since}}
        if shadow is not None:
            query["shadow"] = True if shadow else {"$ne": True}
        yield from self._collection.find(query, batch_size=5000).sort("ts", ASCENDING)

    def erase_user(self, user_id: str) -> int:
        return int(self._collection.delete_many({"user_id": user_id}).deleted_count)
