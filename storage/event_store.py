"""MongoDB-held events and items: the port and the MongoDB adapter (the twin: storage/event_store_memory.py).

``events._id`` is the event id, so storing the same event twice is a duplicate-key error (11000)
that the adapter reports per document instead of raising. ``erasures`` lists users whose data was
erased (retraining leaves them out); events that arrive after an erasure are stored again, since the
user may come back, and a later erasure deletes them too.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from core.late_attribution import AttributionUpdate
from core.settings import MongoSettings
from storage.errors import Unstorable
from storage.event_docs import (
    REPORT_FIELDS,
    as_event,
    as_item,
    attribution_filter,
    distinct_in_order,
    event_projection,
    report_doc,
    ts_range,
)
from storage.item_docs import first_added, merge_item_updates
from storage.mongo_client import open_mongo_client

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
MAX_BSON_SIZE = 16 * 1024 * 1024  # MongoDB's document size limit
# Write errors that say "the server is not able to take writes right now" rather than "this document
# is wrong": the whole batch is retried for these (pymongo's own retryable, not-primary and shutdown
# codes, plus lock and time-limit errors). Any other per-document error rejects that document.
TRANSIENT_WRITE_CODES = frozenset(
    {6, 7, 24, 46, 50, 64, 89, 91, 112, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436}
)
# How many of the newest events ``recent_users`` scans by default: cheap on the ts index.
RECENT_SCAN = 2000
# Shoppers per query of ``events_of_users_since``: keeps each ``$in`` list (and query document) small.
USERS_PER_QUERY = 1000
# What late attribution reads of an event (core.late_attribution): the rules' inputs and the current state.
LATE_FIELDS = ("user_id", "item_id", "event_type", "ts", "recommendation_id", "position", "attribution")
Doc = dict[str, Any]


@dataclass
class InsertResult:
    inserted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # _id → the server's reason


class EventStore(Protocol):
    def ensure_indexes(self) -> None: ...

    def insert_events(self, docs: list[Doc]) -> InsertResult:
        """Insert documents keyed by ``_id``; ids already stored come back as duplicates.

        Documents the server refuses for their content come back in ``rejected``; a document the
        driver cannot encode raises ``bson.errors.InvalidDocument`` (or ``OverflowError``), and the
        documents before it may or may not have been stored.
        """

    def stored_events(self, event_ids: Iterable[str]) -> dict[str, Doc | None]:
        """Per id: the stored document without ``ingested_at`` (None when not stored); its ``src``
        ({topic, partition, offset}) is the record it was first read from."""

    def upsert_items(self, updates: list[Doc]) -> None:
        """Apply partial item updates in order (``item_id`` plus the fields to set).

        Raises ``Unstorable`` (or the driver's encoding error) when an update cannot be stored.
        """

    def get_items(self, item_ids: Iterable[str]) -> dict[str, Doc]: ...

    def iter_items(self, batch_size: int = 5000) -> Iterator[list[Doc]]: ...

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[Doc]]:
        """Events with since <= ts < until in ts order, as batches of dicts carrying ``event_id``.

        With ``fields`` each dict holds only those stored fields (and ``event_id`` only when ``_id`` is
        one of them): the server sends no more than the reader needs."""

    def latest_event_time_before(self, when: datetime) -> datetime | None:
        """The ``ts`` of the newest stored event older than ``when`` (None: nothing older is stored).
        Retrain's backwards read of an open window asks it to know where to stop (or what gap to jump)."""

    def count_events(self) -> int: ...

    def stored_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        """The ids among ``event_ids`` that are stored (cheaper than ``stored_events``)."""

    def event_ids(self, batch_size: int = 10_000) -> Iterator[str]:
        """Every stored event id, in no particular order."""

    def recent_users(self, limit: int, scan: int = RECENT_SCAN) -> list[str]:
        """Distinct user ids of the newest ``scan`` events, newest first, at most ``limit``."""

    def user_ids(self) -> Iterator[str]:
        """Every user id with at least one stored event, in id order."""
        ...

    def max_source_offsets(self) -> dict[tuple[str, int], int]:
        """Highest ``src`` offset among stored events, per (topic, partition)."""

    def erase_user(self, user_id: str) -> int:
        """Delete the user's events, record the erasure; returns the number of events deleted."""

    def erased_users(self) -> set[str]: ...

    def ping(self) -> None: ...

    def attributed_events(self, since: datetime, until: datetime | None = None) -> Iterator[Doc]:
        """Events with since <= ts (< until) that carry an ``attribution``, in no particular order;
        only ``REPORT_FIELDS`` (and ``_id``)."""

    def events_of_users_since(
        self,
        user_ids: Iterable[str],
        since: datetime,
        until: datetime | None = None,
        event_types: Iterable[str] | None = None,
    ) -> Iterator[Doc]:
        """These shoppers' events with since <= ts (< until), of ``event_types`` when given; only
        ``REPORT_FIELDS`` (and ``_id``), in no particular order."""

    def late_attribution_candidates(
        self,
        user_ids: Collection[str],
        item_ids: Collection[str],
        since: datetime,
        until: datetime,
        event_types: Collection[str],
    ) -> list[Doc]:
        """Stored events of these shoppers on these items and of these types with since <= ts < until
        that are not attributed by id (none, or by window): what impressions stored later may credit.
        One query on the (user_id, ts) index; documents hold ``_id`` and ``LATE_FIELDS``."""

    def set_attribution(self, updates: Sequence[AttributionUpdate]) -> int:
        """Set each update's ``attribution`` where the stored one is still what it replaces (none, or
        the window attribution to ``expected``; a by-id update replaces any that is not by id), in
        one unordered write. Idempotent and race-free by those conditions; returns how many changed."""


def _write_error(error: Doc) -> str:
    return f"MongoDB write error {error.get('code')}: {error.get('errmsg', '')}"[:500]


class MongoEventStore:
    def __init__(self, db: Database[Doc]) -> None:
        self.db = db
        self.events = db["events"]
        self.items = db["items"]
        self.erasures = db["erasures"]

    @classmethod
    def from_settings(cls, settings: MongoSettings, database: str | None = None) -> MongoEventStore:
        client: MongoClient[Doc] = open_mongo_client(settings)
        return cls(client[database or settings.database])

    def close(self) -> None:
        self.db.client.close()

    def ensure_indexes(self) -> None:
        # Two indexes only: every extra index slows every insert on the dev server.
        self.events.create_index([("user_id", ASCENDING), ("ts", ASCENDING)], name="user_ts")
        self.events.create_index([("ts", ASCENDING)], name="ts")

    def insert_events(self, docs: list[Doc]) -> InsertResult:
        if not docs:
            return InsertResult()
        try:
            self.events.insert_many(docs, ordered=False)
            return InsertResult(inserted=[d["_id"] for d in docs])
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                e.get("code") in TRANSIENT_WRITE_CODES for e in errors
            ):
                raise
            dup_idx = {int(e["index"]) for e in errors if e.get("code") == DUPLICATE_KEY}
            bad = {int(e["index"]): _write_error(e) for e in errors if e.get("code") != DUPLICATE_KEY}
            return InsertResult(
                inserted=[d["_id"] for i, d in enumerate(docs) if i not in dup_idx and i not in bad],
                duplicates=[docs[i]["_id"] for i in sorted(dup_idx)],
                rejected={str(docs[i]["_id"]): reason for i, reason in sorted(bad.items())},
            )

    def stored_events(self, event_ids: Iterable[str]) -> dict[str, Doc | None]:
        ids = list(dict.fromkeys(event_ids))
        found = {d["_id"]: d for d in self.events.find({"_id": {"$in": ids}}, {"ingested_at": 0})}
        return {i: found.get(i) for i in ids}

    def upsert_items(self, updates: list[Doc]) -> None:
        merged = merge_item_updates(updates)
        if not merged:
            return
        now = datetime.now(UTC)
        added = first_added(updates)
        ops = [
            UpdateOne(
                {"_id": iid},
                # $setOnInsert: the first-seen time is written once, by the update creating the item.
                {
                    "$set": {**fields, "updated_at": now},
                    **({"$setOnInsert": {"added_at": added[iid]}} if iid in added else {}),
                },
                upsert=True,
            )
            for iid, fields in merged.items()
        ]
        try:
            self.items.bulk_write(ops, ordered=True)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                e.get("code") in TRANSIENT_WRITE_CODES for e in errors
            ):
                raise
            raise Unstorable(_write_error(errors[0]) if errors else str(exc)) from exc

    def get_items(self, item_ids: Iterable[str]) -> dict[str, Doc]:
        ids = list(dict.fromkeys(item_ids))
        return {d["_id"]: as_item(d) for d in self.items.find({"_id": {"$in": ids}})}

    def iter_items(self, batch_size: int = 5000) -> Iterator[list[Doc]]:
        batch: list[Doc] = []
        for doc in self.items.find({}, batch_size=batch_size):
            batch.append(as_item(doc))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[Doc]]:
        query: Doc = {}
        ts_range: Doc = {}
        if since is not None:
            ts_range["$gte"] = since
        if until is not None:
            ts_range["$lt"] = until
        if ts_range:
            query["ts"] = ts_range
        excluded = sorted(set(exclude_users))
        if excluded:
            query["user_id"] = {"$nin": excluded}
        batch: list[Doc] = []
        # The cursor fetches batch_size documents per round trip; only one batch is held at a time.
        projection = event_projection(fields)
        cursor = self.events.find(query, projection, batch_size=batch_size).sort("ts", ASCENDING)
        for doc in cursor:
            batch.append(as_event(doc))
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def latest_event_time_before(self, when: datetime) -> datetime | None:
        # One step down the ts index on MongoDB. (The dev server's cost grows with the events older
        # than ``when``: none at all in the usual last call of a backwards read.)
        doc = self.events.find_one({"ts": {"$lt": when}}, {"ts": 1, "_id": 0}, sort=[("ts", DESCENDING)])
        ts = doc.get("ts") if doc else None
        if not isinstance(ts, datetime):
            return None
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)

    def count_events(self) -> int:
        return int(self.events.count_documents({}))

    def stored_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        ids = list(dict.fromkeys(event_ids))
        return {str(d["_id"]) for d in self.events.find({"_id": {"$in": ids}}, {"_id": 1})}

    def event_ids(self, batch_size: int = 10_000) -> Iterator[str]:
        for doc in self.events.find({}, {"_id": 1}).batch_size(batch_size):
            yield str(doc["_id"])

    def recent_users(self, limit: int, scan: int = RECENT_SCAN) -> list[str]:
        cursor = self.events.find({}, {"user_id": 1, "_id": 0}).sort("ts", -1).limit(scan)
        return distinct_in_order([str(d["user_id"]) for d in cursor if "user_id" in d], limit)

    def user_ids(self) -> Iterator[str]:
        pipeline: list[Doc] = [{"$group": {"_id": "$user_id"}}, {"$sort": {"_id": 1}}]
        for doc in self.events.aggregate(pipeline, allowDiskUse=True):
            if doc["_id"] is not None:
                yield str(doc["_id"])

    def max_source_offsets(self) -> dict[tuple[str, int], int]:
        pipeline: list[Doc] = [
            {"$match": {"src.offset": {"$exists": True}}},
            {"$group": {"_id": {"t": "$src.topic", "p": "$src.partition"}, "o": {"$max": "$src.offset"}}},
        ]
        return {
            (str(d["_id"]["t"]), int(d["_id"]["p"])): int(d["o"]) for d in self.events.aggregate(pipeline)
        }

    def erase_user(self, user_id: str) -> int:
        deleted = int(self.events.delete_many({"user_id": user_id}).deleted_count)
        self.erasures.update_one(
            {"_id": user_id},
            {"$set": {"erased_at": datetime.now(UTC)}, "$inc": {"events_deleted": deleted}},
            upsert=True,
        )
        log.info("event=user_erased user_id=%s events_deleted=%d", user_id, deleted)
        return deleted

    def erased_users(self) -> set[str]:
        return {str(d["_id"]) for d in self.erasures.find({}, {"_id": 1})}

    def attributed_events(self, since: datetime, until: datetime | None = None) -> Iterator[Doc]:
        # Served by the ts index; the attribution filter runs on the documents in that range.
        query: Doc = {"ts": ts_range(since, until), "attribution": {"$exists": True}}
        for doc in self.events.find(query, dict.fromkeys(REPORT_FIELDS, 1), batch_size=5000):
            yield report_doc(doc)

    def events_of_users_since(
        self,
        user_ids: Iterable[str],
        since: datetime,
        until: datetime | None = None,
        event_types: Iterable[str] | None = None,
    ) -> Iterator[Doc]:
        users = sorted(set(user_ids))
        types = None if event_types is None else sorted(set(event_types))
        for start in range(0, len(users), USERS_PER_QUERY):
            # Served by the (user_id, ts) index.
            chunk = users[start : start + USERS_PER_QUERY]
            query: Doc = {"user_id": {"$in": chunk}, "ts": ts_range(since, until)}
            if types is not None:
                query["event_type"] = {"$in": types}
            for doc in self.events.find(query, dict.fromkeys(REPORT_FIELDS, 1), batch_size=5000):
                yield report_doc(doc)

    def ping(self) -> None:
        self.db.command("ping")

    def late_attribution_candidates(
        self,
        user_ids: Collection[str],
        item_ids: Collection[str],
        since: datetime,
        until: datetime,
        event_types: Collection[str],
    ) -> list[Doc]:
        if not user_ids or not item_ids or not event_types:
            return []
        query: Doc = {
            "user_id": {"$in": sorted(user_ids)},
            "ts": {"$gte": since, "$lt": until},
            "item_id": {"$in": sorted(item_ids)},
            "event_type": {"$in": sorted(event_types)},
            "attribution.by": {"$ne": "id"},  # also true where there is no attribution
        }
        return list(self.events.find(query, dict.fromkeys(LATE_FIELDS, 1)))

    def set_attribution(self, updates: Sequence[AttributionUpdate]) -> int:
        if not updates:
            return 0
        ops = [UpdateOne(attribution_filter(u), {"$set": {"attribution": u.attribution}}) for u in updates]
        return int(self.events.bulk_write(ops, ordered=False).modified_count)
