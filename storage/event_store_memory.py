"""The event store's in-memory twin: the behaviour of ``MongoEventStore`` for unit tests, no MongoDB."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime

import bson
from bson.errors import InvalidDocument
from pymongo.errors import DocumentTooLarge

from core.late_attribution import AttributionUpdate
from storage.event_docs import as_event, as_item, attribution_applies, distinct_in_order, report_doc
from storage.event_store import LATE_FIELDS, MAX_BSON_SIZE, RECENT_SCAN, Doc, InsertResult
from storage.item_docs import first_added, merge_item_updates


class InMemoryEventStore:
    """Same behaviour as ``MongoEventStore`` for unit tests; set ``fail_with`` to simulate an outage.

    Each written document is BSON-encoded, so what the driver cannot encode fails here too, with the
    driver's own error; ``unstorable`` adds refusals of your choice (a message → ``InvalidDocument``).
    Like the driver, a failing write has stored the documents before the failing one.
    """

    def __init__(self) -> None:
        self.events: dict[str, Doc] = {}
        self.items: dict[str, Doc] = {}
        self.erasures: dict[str, Doc] = {}
        self.fail_with: Exception | None = None
        self.unstorable: Callable[[Doc], str | None] = lambda _doc: None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def _encode(self, doc: Doc) -> None:
        if (reason := self.unstorable(doc)) is not None:
            raise InvalidDocument(reason)
        if len(bson.encode(doc)) > MAX_BSON_SIZE:
            raise DocumentTooLarge(f"BSON document too large; the maximum is {MAX_BSON_SIZE} bytes")

    def ensure_indexes(self) -> None:
        self._check()

    def insert_events(self, docs: list[Doc]) -> InsertResult:
        self._check()
        result = InsertResult()
        for doc in docs:
            self._encode(doc)
            if doc["_id"] in self.events:
                result.duplicates.append(doc["_id"])
            else:
                self.events[doc["_id"]] = dict(doc)
                result.inserted.append(doc["_id"])
        return result

    def stored_events(self, event_ids: Iterable[str]) -> dict[str, Doc | None]:
        self._check()
        out: dict[str, Doc | None] = {}
        for i in event_ids:
            doc = self.events.get(i)
            out[i] = None if doc is None else {k: v for k, v in doc.items() if k != "ingested_at"}
        return out

    def upsert_items(self, updates: list[Doc]) -> None:
        self._check()
        added = first_added(updates)
        # Stamped like the MongoDB adapter (to its milliseconds): the catalog reader's twin reads it.
        stamp = datetime.now(UTC)
        now = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)
        for iid, fields in merge_item_updates(updates).items():
            self._encode({"_id": iid, **fields})
            fields = {**fields, "updated_at": now}
            if iid not in self.items and iid in added:
                fields = {**fields, "added_at": added[iid]}
            self.items.setdefault(iid, {"_id": iid}).update(fields)

    def get_items(self, item_ids: Iterable[str]) -> dict[str, Doc]:
        self._check()
        return {i: as_item(self.items[i]) for i in item_ids if i in self.items}

    def iter_items(self, batch_size: int = 5000) -> Iterator[list[Doc]]:
        docs = [as_item(d) for d in self.items.values()]
        for start in range(0, len(docs), batch_size):
            yield docs[start : start + batch_size]

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[Doc]]:
        self._check()
        excluded = set(exclude_users)
        keep = None if fields is None else set(fields)
        stored = sorted(
            (
                d
                for d in self.events.values()
                if (since is None or d["ts"] >= since)
                and (until is None or d["ts"] < until)
                and d["user_id"] not in excluded
            ),
            key=lambda d: d["ts"],
        )
        for start in range(0, len(stored), batch_size):
            chunk = stored[start : start + batch_size]
            yield [as_event(d if keep is None else {k: v for k, v in d.items() if k in keep}) for d in chunk]

    def latest_event_time_before(self, when: datetime) -> datetime | None:
        self._check()
        times = [as_event(d)["ts"] for d in self.events.values() if isinstance(d.get("ts"), datetime)]
        return max((t for t in times if t < when), default=None)

    def count_events(self) -> int:
        self._check()
        return len(self.events)

    def stored_event_ids(self, event_ids: Iterable[str]) -> set[str]:
        self._check()
        return {i for i in event_ids if i in self.events}

    def event_ids(self, batch_size: int = 10_000) -> Iterator[str]:
        self._check()
        yield from list(self.events)

    def recent_users(self, limit: int, scan: int = RECENT_SCAN) -> list[str]:
        self._check()
        newest = sorted(self.events.values(), key=lambda d: d["ts"], reverse=True)[:scan]
        return distinct_in_order([str(d["user_id"]) for d in newest], limit)

    def user_ids(self) -> Iterator[str]:
        self._check()
        yield from sorted({str(d["user_id"]) for d in self.events.values()})

    def max_source_offsets(self) -> dict[tuple[str, int], int]:
        self._check()
        out: dict[tuple[str, int], int] = {}
        for doc in self.events.values():
            src = doc.get("src")
            if src and src.get("offset") is not None:
                tp = (str(src["topic"]), int(src["partition"]))
                out[tp] = max(out.get(tp, -1), int(src["offset"]))
        return out

    def erase_user(self, user_id: str) -> int:
        self._check()
        doomed = [i for i, d in self.events.items() if d["user_id"] == user_id]
        for i in doomed:
            del self.events[i]
        entry = self.erasures.setdefault(user_id, {"_id": user_id, "events_deleted": 0})
        entry["erased_at"] = datetime.now(UTC)
        entry["events_deleted"] += len(doomed)
        return len(doomed)

    def erased_users(self) -> set[str]:
        self._check()
        return set(self.erasures)

    def ping(self) -> None:
        self._check()

    def attributed_events(self, since: datetime, until: datetime | None = None) -> Iterator[Doc]:
        self._check()
        for doc in list(self.events.values()):
            if "attribution" in doc and _within(doc["ts"], since, until):
                yield report_doc(doc)

    def events_of_users_since(
        self,
        user_ids: Iterable[str],
        since: datetime,
        until: datetime | None = None,
        event_types: Iterable[str] | None = None,
    ) -> Iterator[Doc]:
        self._check()
        users = set(user_ids)
        types = None if event_types is None else set(event_types)
        for doc in list(self.events.values()):
            if (
                doc["user_id"] in users
                and _within(doc["ts"], since, until)
                and (types is None or doc.get("event_type") in types)
            ):
                yield report_doc(doc)

    def late_attribution_candidates(
        self,
        user_ids: Collection[str],
        item_ids: Collection[str],
        since: datetime,
        until: datetime,
        event_types: Collection[str],
    ) -> list[Doc]:
        self._check()
        return [
            {"_id": d["_id"], **{f: d[f] for f in LATE_FIELDS if f in d}}
            for d in self.events.values()
            if d["user_id"] in user_ids
            and d["item_id"] in item_ids
            and d["event_type"] in event_types
            and since <= d["ts"] < until
            and (d.get("attribution") or {}).get("by") != "id"
        ]

    def set_attribution(self, updates: Sequence[AttributionUpdate]) -> int:
        self._check()
        changed = 0
        for update in updates:
            stored = self.events.get(update.event_id)
            if stored is not None and attribution_applies(stored, update):
                if stored.get("attribution") != update.attribution:
                    changed += 1
                stored["attribution"] = dict(update.attribution)
        return changed


def _within(ts: datetime, since: datetime, until: datetime | None) -> bool:
    return ts >= since and (until is None or ts < until)
