"""The one Kafka produce loop: queue messages, wait for room when the local queue is full, count deliveries.

``confluent_kafka.Producer.produce`` raises ``BufferError`` when its local queue is full; the only way
to make room is to serve delivery reports (``poll``) and try again. Every producer in the project goes
through ``produce_one`` for that: ``publish`` (the CLI's producers, dead-letter replay) and
``ResilientProducer`` (serving's ingest, the consumer's dead-letter sink), which waits for room its own
way (within its deadline, keeping its in-flight bookkeeping) through the ``wait_for_room`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException

from core.errors import DependencyUnavailable
from storage.kafka_delivery import OutMessage, ProducerLike

__all__ = ["DeliveryCallback", "DeliveryCounts", "produce_one", "publish"]

DeliveryCallback = Callable[[Any, Any], None]  # (error or None, message), as librdkafka calls it


def produce_one(
    producer: ProducerLike,
    topic: str,
    message: OutMessage,
    *,
    on_delivery: DeliveryCallback,
    wait_for_room: Callable[[], object],
) -> None:
    """Queue one ``(key, value, headers)`` message; while the local queue is full, call
    ``wait_for_room()`` (which serves delivery reports, or raises to give up) and try again.

    A ``KafkaException`` from ``produce`` propagates: callers classify it their own way.
    """
    key, value, headers = message
    kwargs: dict[str, Any] = {"value": value, "key": key}
    if headers:
        kwargs["headers"] = headers
    while True:
        try:
            producer.produce(topic, on_delivery=on_delivery, **kwargs)
            return
        except BufferError:
            wait_for_room()


@dataclass
class DeliveryCounts:
    """How many messages were queued, acknowledged and refused (filled by delivery reports)."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    first_error: str | None = None

    def on_delivery(self, err: Any, _msg: Any) -> None:
        # Reports are served inside the caller's own poll/flush, on its thread: no lock needed.
        if err is None:
            self.acked += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(err)

    @property
    def unreported(self) -> int:
        """Queued messages whose delivery report has not arrived yet."""
        return self.sent - self.acked - self.failed


def publish(
    producer: ProducerLike,
    topic: str,
    messages: Iterable[OutMessage],
    *,
    counts: DeliveryCounts | None = None,
    room_wait_s: float = 0.05,
    on_sent: Callable[[int], None] | None = None,
) -> DeliveryCounts:
    """Queue every message to ``topic`` and return the counts (pass ``counts`` to add to earlier ones).

    Does not wait for acknowledgements: the caller flushes (``producer.flush``) and then reads
    ``failed``/``first_error``. A full local queue is waited out by polling ``room_wait_s`` at a time;
    a message ``produce`` refuses raises ``DependencyUnavailable``. ``on_sent(count)`` is called after
    each queued message (progress bars).
    """
    counts = counts if counts is not None else DeliveryCounts()

    def wait_for_room() -> None:
        producer.poll(room_wait_s)

    for message in messages:
        try:
            produce_one(producer, topic, message, on_delivery=counts.on_delivery, wait_for_room=wait_for_room)
        except KafkaException as exc:
            raise DependencyUnavailable(f"cannot produce to Kafka topic {topic}: {exc}") from exc
        counts.sent += 1
        # Serve the reports already in: keeps the counts current and the local queue short.
        producer.poll(0)
        if on_sent is not None:
            on_sent(counts.sent)
    return counts
