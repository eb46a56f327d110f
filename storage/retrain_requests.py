"""On-demand retrain requests: a port, the MongoDB adapter and an in-memory twin.

``POST /v1/admin/retrain`` calls ``request``; the retrain role's ``--every`` loop calls ``take`` on every
poll and runs at once when it claims one. Serving never trains in-process: a training run would steal
CPU from request handling and die with the API process.

MongoDB layout (unchanged since the first release, so stored requests keep working): the collection
``retrain_requests`` holds ``{_id, requested_at, reason, status}``; ``status`` is ``pending`` until a
retrain replica claims the request, which sets ``taken`` and ``taken_at``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from core.settings import MongoSettings

COLLECTION = "retrain_requests"
# Oldest first; the id breaks ties, since MongoDB keeps ``requested_at`` to the millisecond only.
ORDER = [("requested_at", 1), ("_id", 1)]


@dataclass(frozen=True)
class RetrainRequest:
    id: str
    requested_at: datetime
    reason: str
    status: str  # pending | taken


class RetrainRequests(Protocol):
    def request(self, reason: str) -> RetrainRequest:
        """Record a pending request; returns it."""

    def pending(self) -> list[RetrainRequest]:
        """The requests nobody has taken yet, oldest first."""

    def take(self) -> RetrainRequest | None:
        """Atomically claim the oldest pending request (two retrain replicas never both get it);
        None when none is pending."""


def _new_id() -> str:
    # 32 hex digits like the uuid4 ids stored before, but led by the clock, so ids made within one
    # millisecond still sort in the order they were made.
    return f"{time.time_ns():016x}{uuid.uuid4().hex[:16]}"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def request_from_doc(doc: dict[str, Any]) -> RetrainRequest:
    return RetrainRequest(
        id=str(doc["_id"]),
        requested_at=_aware(doc["requested_at"]),
        reason=str(doc.get("reason") or ""),
        status=str(doc.get("status") or "pending"),
    )


class MongoRetrainRequests:
    def __init__(self, database: Any) -> None:
        self._collection = database[COLLECTION]
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: MongoSettings) -> MongoRetrainRequests:
        """On its own MongoClient, closed by ``close()``."""
        from storage.mongo_client import open_mongo_client

        client = open_mongo_client(settings)
        requests = cls(client[settings.database])
        requests._client = client
        return requests

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def request(self, reason: str) -> RetrainRequest:
        doc = {"_id": _new_id(), "requested_at": datetime.now(UTC), "reason": reason, "status": "pending"}
        self._collection.insert_one(doc)
        return request_from_doc(doc)

    def pending(self) -> list[RetrainRequest]:
        return [request_from_doc(d) for d in self._collection.find({"status": "pending"}).sort(ORDER)]

    def take(self) -> RetrainRequest | None:
        from pymongo import ReturnDocument

        doc = self._collection.find_one_and_update(
            {"status": "pending"},
            {"$set": {"status": "taken", "taken_at": datetime.now(UTC)}},
            sort=ORDER,
            return_document=ReturnDocument.AFTER,
        )
        return request_from_doc(doc) if doc is not None else None


class InMemoryRetrainRequests:
    """Same behaviour as ``MongoRetrainRequests`` for unit tests; set ``fail_with`` to simulate an outage."""

    def __init__(self) -> None:
        self._requests: list[RetrainRequest] = []
        self.fail_with: Exception | None = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def request(self, reason: str) -> RetrainRequest:
        self._check()
        made = RetrainRequest(id=_new_id(), requested_at=datetime.now(UTC), reason=reason, status="pending")
        self._requests.append(made)
        return made

    def pending(self) -> list[RetrainRequest]:
        self._check()
        waiting = [r for r in self._requests if r.status == "pending"]
        return sorted(waiting, key=lambda r: (r.requested_at, r.id))

    def take(self) -> RetrainRequest | None:
        waiting = self.pending()
        if not waiting:
            return None
        taken = replace(waiting[0], status="taken")
        self._requests[self._requests.index(waiting[0])] = taken
        return taken
