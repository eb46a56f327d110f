"""The impression log port: one contract for the in-memory twin and the Kafka adapter (here over the
in-memory producer; tests/integration/test_serving_impressions.py runs it against a real broker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.impressions import Impression, ShownItem, parse_impression
from serving.ports import InMemoryProducer
from storage.impression_log import ImpressionLog, InMemoryImpressionLog, KafkaImpressionLog

TOPIC = "impressions-test"


def impression(n: int, user: str | None = "u1") -> Impression:
    return Impression(
        impression_id=f"r{n}",
        request_id=f"r{n}",
        user_id=user,
        surface="recommendations",
        model_version="3",
        items=[ShownItem(item_id="i1", position=0, reason="personalized", score=0.5)],
        ts=datetime.now(UTC),
    )


class Draft:
    """A record built later (what serving offers): the log calls ``build`` off the request path."""

    def __init__(self, n: int, fail: bool = False) -> None:
        self.n, self.fail, self.built_on = n, fail, ""

    def build(self) -> Impression:
        self.built_on = threading.current_thread().name
        if self.fail:
            raise ValueError("not a valid impression")
        return impression(self.n)

    def encode(self) -> tuple[bytes, bytes]:
        built = self.build()
        return built.key, built.to_json()


class GatedProducer(InMemoryProducer):
    """Produces nothing until ``gate`` is set: a broker that does not answer yet."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def flush(self, timeout: float = 0.0) -> int:
        if not self.gate.wait(timeout):
            return len(self._pending)
        return super().flush(timeout)


class PurgeableProducer(InMemoryProducer):
    """Like librdkafka: messages queued in the client can be purged before they are sent."""

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self._pending = []


def kafka_log(
    producer: InMemoryProducer, *, linger_s: float = 0.0, batch_max: int = 500
) -> KafkaImpressionLog:
    return KafkaImpressionLog(producer, TOPIC, poll_s=0.01, linger_s=linger_s, batch_max=batch_max)


class BoundedProducer(GatedProducer):
    """Like librdkafka's bounded client queue: ``produce`` raises BufferError when it is full."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity

    def produce(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, on_delivery: Any = None
    ) -> None:
        if len(self._pending) >= self.capacity:
            raise BufferError("Local: Queue full")
        super().produce(topic, value, key, on_delivery)


class Subject:
    """One implementation of the port under test and a way to read back what it logged."""

    def __init__(self, log: ImpressionLog, logged: Callable[[], list[Impression]]) -> None:
        self.log = log
        self.logged = logged

    def wait_logged(self, n: int, timeout_s: float = 5.0) -> list[Impression]:
        deadline = time.monotonic() + timeout_s
        while len(self.logged()) < n:
            assert time.monotonic() < deadline, f"{len(self.logged())} of {n} impressions logged"
            time.sleep(0.01)
        return self.logged()


def kafka_records(producer: InMemoryProducer) -> list[Impression]:
    out = []
    for topic, key, value in list(producer.messages):
        parsed = parse_impression(value)
        assert topic == TOPIC and isinstance(parsed, Impression), parsed
        assert key == parsed.key
        out.append(parsed)
    return out


@pytest.fixture(params=["twin", "kafka"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "twin":
        twin = InMemoryImpressionLog()
        yield Subject(twin, lambda: twin.records)
        return
    producer = InMemoryProducer()
    log = kafka_log(producer)
    yield Subject(log, lambda: kafka_records(producer))
    log.close(1.0)


def test_offered_records_and_drafts_are_logged_and_counted(subject: Subject) -> None:
    draft = Draft(2)
    assert subject.log.offer(impression(1)) is True
    assert subject.log.offer(draft) is True
    logged = subject.wait_logged(2)
    assert [i.impression_id for i in logged] == ["r1", "r2"]
    if isinstance(subject.log, KafkaImpressionLog):
        # Encoded by the caller (a few microseconds): no thread hop and no GIL turns for a sender.
        assert draft.built_on == threading.current_thread().name
    deadline = time.monotonic() + 5
    while subject.log.counts().sent < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    counts = subject.log.counts()
    assert (counts.queued, counts.sent) == (2, 2)
    assert sum(counts.dropped.values()) == 0


def test_offers_after_close_are_refused_and_counted(subject: Subject) -> None:
    subject.log.close(1.0)
    assert subject.log.offer(impression(1)) is False
    assert subject.log.counts().dropped["closed"] == 1
    subject.log.close(1.0)  # closing twice is harmless


def test_twin_capacity_and_full_count_queue_full_drops() -> None:
    twin = InMemoryImpressionLog(capacity=1)
    assert twin.offer(impression(1)) is True
    assert twin.offer(impression(2)) is False
    twin.capacity = None
    twin.full = True
    assert twin.offer(impression(3)) is False
    assert twin.counts().dropped["queue_full"] == 2 and len(twin.records) == 1


def test_kafka_full_queue_drops_without_blocking_and_sends_the_rest_later() -> None:
    producer = BoundedProducer(capacity=3)
    log = kafka_log(producer)
    try:
        started = time.monotonic()
        accepted = [log.offer(impression(n)) for n in range(20)]
        assert time.monotonic() - started < 0.5  # never waits for the broker
        # Buffered at once; the client's full queue refuses them when the buffer is handed over.
        assert accepted == [True] * 20
        counts = log.counts()
        assert counts.dropped["queue_full"] == 17 and counts.queued == 3
        producer.gate.set()
        deadline = time.monotonic() + 10
        while log.counts().sent < 3:
            assert time.monotonic() < deadline, log.counts()
            time.sleep(0.01)
        assert len(kafka_records(producer)) == 3
    finally:
        log.close(2.0)


def test_kafka_failed_delivery_is_counted_and_the_sender_goes_on() -> None:
    producer = PurgeableProducer()
    producer.fail = "broker down"
    log = kafka_log(producer)
    try:
        for n in range(3):
            assert log.offer(impression(n)) is True
        deadline = time.monotonic() + 10
        while log.counts().dropped["delivery_failed"] < 3:
            assert time.monotonic() < deadline, log.counts()
            time.sleep(0.02)
        producer.fail = None
        assert log.offer(impression(9)) is True
        while log.counts().sent < 1:
            assert time.monotonic() < deadline, log.counts()
            time.sleep(0.02)
        assert [i.impression_id for i in kafka_records(producer)] == ["r9"]
    finally:
        log.close(2.0)


def test_kafka_invalid_draft_is_counted_not_fatal() -> None:
    producer = InMemoryProducer()
    log = kafka_log(producer)
    try:
        assert log.offer(Draft(1, fail=True)) is False
        assert log.offer(Draft(2)) is True
        deadline = time.monotonic() + 5
        while log.counts().sent < 1:
            assert time.monotonic() < deadline, log.counts()
            time.sleep(0.01)
        assert log.counts().dropped["invalid"] == 1
        assert [i.impression_id for i in kafka_records(producer)] == ["r2"]
    finally:
        log.close(1.0)


def test_kafka_close_flushes_within_its_timeout_and_counts_the_rest() -> None:
    producer = GatedProducer()  # never acknowledges
    log = kafka_log(producer)
    for n in range(10):
        log.offer(impression(n))
    started = time.monotonic()
    log.close(0.5)
    assert time.monotonic() - started < 3.0
    counts = log.counts()
    assert counts.sent == 0
    assert counts.dropped["closed"] + counts.dropped["delivery_failed"] == 10


class BatchCountingProducer(InMemoryProducer):
    """Records how many messages each ``produce_batch`` call carried."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def produce_batch(self, topic: str, messages: list[dict[str, Any]], on_delivery: Any = None) -> int:
        self.batches.append(len(messages))
        return super().produce_batch(topic, messages, on_delivery)


def test_kafka_records_go_to_the_client_a_batch_at_a_time() -> None:
    producer = BatchCountingProducer()
    log = kafka_log(producer, linger_s=60.0, batch_max=5)
    try:
        for n in range(4):
            assert log.offer(impression(n)) is True
        assert producer.batches == [] and len(producer) == 0  # buffered: not yet due
        log.offer(impression(4))  # the fifth fills the batch: handed over in one call by this offer
        assert producer.batches == [5]
        for n in range(5, 12):
            log.offer(impression(n))
        assert producer.batches == [5, 5]
    finally:
        log.close(1.0)
    # close hands over what was still buffered (two records), and everything arrives once, in order.
    assert producer.batches == [5, 5, 2]
    assert [i.impression_id for i in kafka_records(producer)] == [f"r{n}" for n in range(12)]
    assert log.counts().queued == 12 and log.counts().sent == 12


def test_kafka_buffer_no_offer_comes_to_flush_is_sent_within_the_linger() -> None:
    producer = BatchCountingProducer()
    log = kafka_log(producer, linger_s=0.05, batch_max=500)
    try:
        log.offer(impression(1))  # quiet traffic: no later offer finds the buffer due
        deadline = time.monotonic() + 5
        while log.counts().sent < 1:
            assert time.monotonic() < deadline, log.counts()
            time.sleep(0.01)
        assert producer.batches == [1]
    finally:
        log.close(1.0)
