"""Ports serving uses besides Redis and the model registry, with in-memory twins for unit tests.

Retrain requests: ``POST /v1/admin/retrain`` inserts a document into the MongoDB collection
``retrain_requests`` (``{_id, requested_at, reason, status: "pending"}``); the retrain role polls it,
runs one retrain and sets ``status`` to ``done``/``failed``. Serving never trains in-process: a
training run would steal CPU from request handling and die with the API process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

DeliveryCallback = Callable[[Any, Any], None]


class ErasurePort(Protocol):
    """The part of ``storage.event_store.EventStore`` serving uses."""

    def erase_user(self, user_id: str) -> int: ...

    def erased_users(self) -> set[str]: ...

    def ping(self) -> None: ...


class EventProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` serving uses."""

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any = ...) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


class RetrainRequests(Protocol):
    def request(self, reason: str) -> dict[str, Any]: ...

    def pending(self) -> int: ...


class InMemoryProducer:
    """Records messages; ``fail`` makes every delivery report an error (a broker outage)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes | None, bytes | None]] = []
        self._pending: list[tuple[DeliveryCallback | None, tuple[str, bytes | None, bytes | None]]] = []
        self.fail: str | None = None

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, on_delivery: Any = None
    ) -> None:
        self._pending.append((on_delivery, (topic, key, value)))

    def poll(self, timeout: float = 0.0) -> int:
        return self.flush(timeout)

    def flush(self, timeout: float = 0.0) -> int:
        pending, self._pending = self._pending, []
        for callback, msg in pending:
            if self.fail is None:
                self.messages.append(msg)
            if callback is not None:
                callback(self.fail, msg)
        return 0


class MongoRetrainRequests:
    def __init__(self, collection: Any) -> None:
        self.collection = collection

    def request(self, reason: str) -> dict[str, Any]:
        doc = {
            "_id": uuid.uuid4().hex,
            "requested_at": datetime.now(UTC),
            "reason": reason,
            "status": "pending",
        }
        self.collection.insert_one(doc)
        return doc

    def pending(self) -> int:
        return int(self.collection.count_documents({"status": "pending"}))


class InMemoryRetrainRequests:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_with: Exception | None = None

    def request(self, reason: str) -> dict[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        doc = {
            "_id": uuid.uuid4().hex,
            "requested_at": datetime.now(UTC),
            "reason": reason,
            "status": "pending",
        }
        self.requests.append(doc)
        return doc

    def pending(self) -> int:
        return sum(1 for r in self.requests if r["status"] == "pending")


def as_set(values: Iterable[str]) -> set[str]:
    return {str(v) for v in values}
