"""Ports serving uses besides Redis, the model registry and retrain requests, with in-memory twins.

Retrain requests have their own port in storage/retrain_requests.py (serving writes them, retrain takes them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from storage.online_reads import OnlineEventReads

DeliveryCallback = Callable[[Any, Any], None]


class ErasurePort(Protocol):
    """The part of ``storage.event_store.EventStore`` serving uses."""

    def erase_user(self, user_id: str) -> int: ...

    def erased_users(self) -> set[str]: ...

    def ping(self) -> None: ...


class EventStorePort(ErasurePort, OnlineEventReads, Protocol):
    """What serving uses of the event store: erasure, and the reads of the online reports."""


class EventProducer(Protocol):
    """The part of ``confluent_kafka.Producer`` serving uses."""

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Any = ...) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


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

    def produce_batch(self, topic: str, messages: list[dict[str, Any]], on_delivery: Any = None) -> int:
        """Like librdkafka's: each message ``produce`` refuses is marked with ``_error``, not raised."""
        queued = 0
        for message in messages:
            try:
                self.produce(topic, message.get("value"), message.get("key"), on_delivery)
            except BufferError as exc:
                message["_error"] = str(exc)
            else:
                queued += 1
        return queued

    def poll(self, timeout: float = 0.0) -> int:
        return self.flush(timeout)

    def __len__(self) -> int:
        """Messages produced and not yet delivered (what librdkafka's ``len(producer)`` says)."""
        return len(self._pending)

    def flush(self, timeout: float = 0.0) -> int:
        pending, self._pending = self._pending, []
        for callback, msg in pending:
            if self.fail is None:
                self.messages.append(msg)
            if callback is not None:
                callback(self.fail, msg)
        return 0
