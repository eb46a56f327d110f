"""A Kafka producer helper for storefronts that send events straight to the topics.

Each record is what the consumer accepts, keyed the way it must be:

- an interaction goes to the events topic keyed by ``user_id``: one shopper's events share a
  partition, so the consumer sees them in order (their session, their recent list);
- a catalog update goes to the items topic keyed by ``item_id``.

Values are validated here with the consumer's own parser (core.events), so a record the consumer would
dead-letter raises ``InvalidEvent`` instead of being sent. Delivery is confirmed: ``flush()`` (and
``close()``) raise ``DeliveryError`` for every record the broker did not acknowledge since the last
flush, with the broker's error.

The partitioner is ``murmur2_random``, Java's default (kafka-clients; kafkajs 2.x's
``DefaultPartitioner``): a shopper's events from this helper, from a Java service and from Node land
on the same partition. librdkafka's own default (``consistent_random``, CRC32) would put them
elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from core.events import (
    InteractionEvent,
    ItemUpdate,
    ParseError,
    validate_interaction,
    validate_item_update,
)
from streamrec_client.errors import DeliveryError, InvalidEvent

EVENTS_TOPIC = "streamrec.events"  # core.settings KafkaTopics' defaults
ITEMS_TOPIC = "streamrec.items"
DEFAULTS: dict[str, Any] = {
    # acks=all + idempotence: a retried send is neither duplicated nor reordered within a partition.
    "acks": "all",
    "enable.idempotence": True,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    # A record not acknowledged within this time fails with its error (surfaced by flush).
    "message.timeout.ms": 30_000,
}


class EventProducer:
    """``EventProducer("kafka:9092")``; ``config`` adds or overrides librdkafka settings (security,
    SASL, ...); ``events_topic`` and ``items_topic`` must be the consumer's (STREAMREC_KAFKA__TOPICS__*)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        events_topic: str = EVENTS_TOPIC,
        items_topic: str = ITEMS_TOPIC,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.events_topic = events_topic
        self.items_topic = items_topic
        self._producer = Producer({**DEFAULTS, "bootstrap.servers": bootstrap, **(config or {})})
        self._failures: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
        else:  # already failing: do not hide that error behind a delivery error
            self._producer.flush(5.0)

    def send(self, event: InteractionEvent | Mapping[str, Any]) -> InteractionEvent:
        """Validate and queue one interaction (keyed by user_id); returns the parsed event."""
        data = event.to_wire() if isinstance(event, InteractionEvent) else event
        parsed = validate_interaction(data)
        if isinstance(parsed, ParseError):
            raise InvalidEvent(parsed.code, parsed.reason, parsed.field)
        self._produce(self.events_topic, parsed.user_id, parsed.to_json())
        return parsed

    def send_item(self, update: ItemUpdate | Mapping[str, Any]) -> ItemUpdate:
        """Validate and queue one catalog update (keyed by item_id); returns the parsed update."""
        data = update.model_dump(mode="json", exclude_none=True) if isinstance(update, ItemUpdate) else update
        parsed = validate_item_update(data)
        if isinstance(parsed, ParseError):
            raise InvalidEvent(parsed.code, parsed.reason, parsed.field)
        self._produce(self.items_topic, parsed.item_id, parsed.to_json())
        return parsed

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued record; raise ``DeliveryError`` for those not acknowledged."""
        undelivered = self._producer.flush(timeout_s)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures or undelivered:
            raise DeliveryError(failures, undelivered)

    def close(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        for _ in range(2):
            try:
                self._producer.produce(
                    topic, value=value, key=key.encode("utf-8"), on_delivery=self._delivered
                )
            except BufferError:
                # The local queue is full: serve delivery reports until there is room, then retry once.
                self._producer.poll(1.0)
                continue
            except KafkaException as exc:  # refused locally (e.g. larger than message.max.bytes)
                raise DeliveryError([(topic, key, str(exc.args[0] if exc.args else exc))]) from exc
            self._producer.poll(0)
            return
        raise DeliveryError([(topic, key, "the producer's local queue stayed full")])

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        raw = msg.key()
        key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        with self._lock:
            self._failures.append((msg.topic() or "?", key, err.str()))
