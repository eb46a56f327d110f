"""Write paths: interaction batches and catalog updates, validated then produced to Kafka.

The response is sent only after the broker acknowledged every accepted message (the blocking send
runs in a worker thread; ``ResilientProducer`` retries it and rebuilds a producer that lost its
state). Messages are keyed by user id (events) or item id (catalog), so one user's events stay
ordered in one partition.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.concurrency import run_in_threadpool

from core.events import ParseError, validate_interaction, validate_item_update
from core.settings import Settings
from serving.service_errors import Rejected, Unavailable
from storage.errors import SendFailed
from storage.kafka_producer import OutMessage, ProducerHealth, ResilientProducer

log = logging.getLogger(__name__)


def _error(index: int, err: ParseError) -> dict[str, Any]:
    return {"index": index, "code": err.code, "message": err.reason}


class IngestService:
    def __init__(self, settings: Settings, producer: ResilientProducer) -> None:
        self.settings = settings
        self.producer = producer

    def health(self) -> ProducerHealth:
        return self.producer.health()

    async def _send(self, topic: str, messages: list[OutMessage]) -> None:
        if not messages:
            return
        timeout_s = self.settings.serving.ingest_timeout_s
        try:
            # The producer retries, and rebuilds itself when it lost its state, within the timeout.
            await run_in_threadpool(self.producer.send, topic, messages, timeout_s=timeout_s)
        except SendFailed as exc:
            raise Unavailable(
                "kafka_unavailable",
                f"{exc}; retry the request (event ids make retries safe)",
            ) from exc

    async def ingest_events(self, events: list[Any]) -> dict[str, Any]:
        limit = self.settings.serving.max_batch
        if len(events) > limit:
            raise Rejected("batch_too_large", f"a batch holds at most {limit} events, got {len(events)}")
        accepted: list[OutMessage] = []
        errors: list[dict[str, Any]] = []
        for index, raw in enumerate(events):
            parsed = validate_interaction(raw)
            if isinstance(parsed, ParseError):
                errors.append(_error(index, parsed))
            else:
                accepted.append((parsed.user_id.encode(), parsed.to_json(), None))
        await self._send(self.settings.kafka.topics.events, accepted)
        return {"accepted": len(accepted), "errors": errors}

    async def update_item(self, item_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if "item_id" in body and body["item_id"] != item_id:
            raise Rejected(
                "invalid_value",
                f"body item_id {body['item_id']!r} differs from the path item id {item_id!r}",
            )
        parsed = validate_item_update({**body, "item_id": item_id})
        if isinstance(parsed, ParseError):
            raise Rejected(parsed.code, parsed.reason)
        await self._send(self.settings.kafka.topics.items, [(item_id.encode(), parsed.to_json(), None)])
        return {"accepted": 1, "errors": []}
