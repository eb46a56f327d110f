"""Write paths: interaction batches and catalog updates, validated then produced to Kafka.

The response is sent only after the broker acknowledged every accepted message (the blocking flush
runs in a worker thread). Messages are keyed by user id (events) or item id (catalog), so one
user's events stay ordered in one partition.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from core.events import ParseError, validate_interaction, validate_item_update
from core.settings import Settings
from serving.errors import ApiError
from serving.ports import EventProducer

log = logging.getLogger(__name__)
FLUSH_TIMEOUT_S = 10.0


@dataclass
class _Deliveries:
    expected: int
    failed: list[str] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def callback(self, err: Any, _msg: Any) -> None:
        with self.lock:
            self.done += 1
            if err is not None:
                self.failed.append(str(err))


def _error(index: int, err: ParseError) -> dict[str, Any]:
    return {"index": index, "code": err.code, "message": err.reason}


class IngestService:
    def __init__(self, settings: Settings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self._produce_lock = threading.Lock()

    async def _send(self, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
        if not messages:
            return
        deliveries = _Deliveries(expected=len(messages))

        def send_and_flush() -> int:
            for key, value in messages:
                while True:
                    try:
                        self.producer.produce(topic, value=value, key=key, on_delivery=deliveries.callback)
                        break
                    except BufferError:
                        # Local queue full: serve delivery reports to make room, then try again.
                        self.producer.poll(0.1)
            return self.producer.flush(FLUSH_TIMEOUT_S)

        try:
            await run_in_threadpool(send_and_flush)
        except Exception as exc:  # KafkaException and friends
            raise ApiError(503, "kafka_unavailable", f"could not hand the events to Kafka: {exc}") from exc
        if deliveries.failed:
            raise ApiError(
                503,
                "kafka_unavailable",
                f"Kafka refused {len(deliveries.failed)} of {len(messages)} messages "
                f"({deliveries.failed[0]}); retry the request (event ids make retries safe)",
            )
        if deliveries.done < deliveries.expected:
            raise ApiError(
                503,
                "kafka_unavailable",
                f"Kafka did not confirm {deliveries.expected - deliveries.done} of {len(messages)} messages "
                f"within {FLUSH_TIMEOUT_S:.0f}s; retry the request (event ids make retries safe)",
            )

    async def ingest_events(self, events: list[Any]) -> dict[str, Any]:
        limit = self.settings.serving.max_batch
        if len(events) > limit:
            raise ApiError(422, "batch_too_large", f"a batch holds at most {limit} events, got {len(events)}")
        accepted: list[tuple[bytes, bytes]] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(events):
            parsed = validate_interaction(raw)
            if isinstance(parsed, ParseError):
                errors.append(_error(index, parsed))
            else:
                accepted.append((parsed.user_id.encode(), parsed.to_json()))
        await self._send(self.settings.kafka.topics.events, accepted)
        return {"accepted": len(accepted), "errors": errors}

    async def update_item(self, item_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if "item_id" in body and body["item_id"] != item_id:
            raise ApiError(
                422,
                "invalid_value",
                f"body item_id {body['item_id']!r} differs from the path item id {item_id!r}",
            )
        parsed = validate_item_update({**body, "item_id": item_id})
        if isinstance(parsed, ParseError):
            raise ApiError(422, parsed.code, parsed.reason)
        await self._send(self.settings.kafka.topics.items, [(item_id.encode(), parsed.to_json())])
        return {"accepted": 1, "errors": []}
