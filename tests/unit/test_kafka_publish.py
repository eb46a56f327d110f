"""The one produce loop: waits out a full local queue, counts deliveries, reports a refused produce."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from core.errors import DependencyUnavailable
from storage.kafka_publish import DeliveryCounts, produce_one, publish
from tests.unit.test_kafka_producer import FakeProducer


class PickyProducer(FakeProducer):
    """Acknowledges every message except those whose key is in ``refuse`` (reported as too large)."""

    def __init__(self, refuse: set[bytes]) -> None:
        super().__init__("ack")
        self.refuse = refuse
        self.polls: list[float] = []
        self.kwargs: list[dict[str, Any]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        super().produce(topic, value=value, key=key, **kw)
        self.kwargs.append({"key": key, **kw})

    def poll(self, timeout: float = 0.0) -> int:
        self.polls.append(timeout)
        pending, self.pending = self.pending, []
        for callback, (topic, value) in pending:
            # The tests below send key == value, so the value names the message.
            err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE) if value in self.refuse else None
            callback(err, (topic, value))
        return len(pending)


def messages(*keys: bytes) -> list[tuple[bytes | None, bytes | None, None]]:
    return [(k, k, None) for k in keys]


def test_a_full_local_queue_is_waited_out_by_serving_delivery_reports() -> None:
    producer = PickyProducer(set())
    producer.buffer_errors = 3

    counts = publish(producer, "t", messages(b"a", b"b"), room_wait_s=0.25)

    assert counts.sent == 2
    assert [p for p in producer.polls if p] == [0.25, 0.25, 0.25]  # one wait per BufferError
    assert producer.flush() == 0
    assert (counts.acked, counts.failed, counts.unreported) == (2, 0, 0)


def test_failed_deliveries_are_counted_with_the_first_error() -> None:
    producer = PickyProducer({b"b", b"d"})
    counts = publish(producer, "t", messages(b"a", b"b", b"c", b"d"))
    producer.flush()

    assert (counts.sent, counts.acked, counts.failed) == (4, 2, 2)
    assert counts.first_error is not None and "MSG_SIZE_TOO_LARGE" in counts.first_error


def test_counts_accumulate_across_calls_and_on_sent_sees_the_running_total() -> None:
    producer = PickyProducer(set())
    counts = DeliveryCounts()
    seen: list[int] = []
    publish(producer, "t", messages(b"a"), counts=counts, on_sent=seen.append)
    publish(producer, "u", messages(b"b", b"c"), counts=counts, on_sent=seen.append)

    assert seen == [1, 2, 3]
    assert counts.acked == 3  # reports are served after each produce, before any flush


def test_a_produce_kafka_refuses_is_a_clear_dependency_error() -> None:
    producer = PickyProducer(set())
    producer.produce_error = KafkaError(KafkaError._UNKNOWN_TOPIC)

    with pytest.raises(DependencyUnavailable, match="cannot produce to Kafka topic t"):
        publish(producer, "t", messages(b"a"))


def test_produce_one_passes_headers_only_when_present_and_lets_the_wait_give_up() -> None:
    producer = PickyProducer(set())
    noop = DeliveryCounts().on_delivery
    produce_one(producer, "t", (b"k", b"v", [("h", b"1")]), on_delivery=noop, wait_for_room=lambda: None)
    produce_one(producer, "t", (b"k", b"v", None), on_delivery=noop, wait_for_room=lambda: None)
    assert producer.kwargs[0]["headers"] == [("h", b"1")]
    assert "headers" not in producer.kwargs[1]

    class GiveUp(Exception):
        pass

    def give_up() -> None:
        raise GiveUp

    producer.buffer_errors = 1
    with pytest.raises(GiveUp):
        produce_one(producer, "t", (b"k", b"v", None), on_delivery=noop, wait_for_room=give_up)
    assert len(producer.kwargs) == 2  # nothing was queued


def test_a_kafka_exception_from_produce_one_propagates_unchanged() -> None:
    producer = PickyProducer(set())
    producer.produce_error = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    with pytest.raises(KafkaException):
        produce_one(producer, "t", (b"k", b"v", None), on_delivery=print, wait_for_room=lambda: None)
