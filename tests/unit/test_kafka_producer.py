"""ResilientProducer: rebuilds a producer that lost its state, retries the rest, never loops forever."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from consumer.dead_letters import KafkaDeadLetterSink
from core.errors import DependencyUnavailable
from storage.errors import SendFailed
from storage.kafka_producer import ResilientProducer


class FakeProducer:
    """A scripted stand-in for confluent_kafka.Producer.

    mode: "ack" delivers, "stall" never reports (what a producer with lost idempotence state does),
    or a KafkaError code that every delivery report carries.
    """

    def __init__(self, mode: Any = "ack", *, reachable: bool = True) -> None:
        self.mode = mode
        self.reachable = reachable
        self.sent: list[tuple[str, bytes | None]] = []
        self.pending: list[tuple[Any, Any]] = []
        self.buffer_errors = 0
        self.produce_error: KafkaError | None = None
        self.purged = False
        self.error_cb: Any = None

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("queue full")
        if self.produce_error is not None:
            err, self.produce_error = self.produce_error, None
            raise KafkaException(err)
        self.pending.append((kw["on_delivery"], (topic, value)))

    def poll(self, timeout: float = 0.0) -> int:
        if self.mode == "stall":
            time.sleep(min(timeout, 0.01))
            return 0
        pending, self.pending = self.pending, []
        for callback, msg in pending:
            if self.mode == "ack":
                self.sent.append(msg)
                callback(None, msg)
            else:
                callback(KafkaError(self.mode), msg)
        return len(pending)

    def flush(self, timeout: float = 0.0) -> int:
        self.poll(0)
        return len(self.pending)

    def list_topics(self, timeout: float = 1.0) -> Any:
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return {}

    def purge(self) -> None:
        self.purged = True


class Factory:
    def __init__(self, *producers: FakeProducer) -> None:
        self.queue = list(producers)
        self.built: list[FakeProducer] = []

    def __call__(self, error_cb: Any) -> FakeProducer:
        producer = self.queue.pop(0) if self.queue else FakeProducer()
        producer.error_cb = error_cb
        self.built.append(producer)
        return producer


def resilient(*producers: FakeProducer, **kw: Any) -> tuple[ResilientProducer, Factory]:
    factory = Factory(*producers)
    return ResilientProducer(factory, stall_timeout_s=kw.pop("stall_timeout_s", 0.2), **kw), factory


MSGS = [(b"k1", b"v1", None), (b"k2", b"v2", [("h", b"x")])]


def test_a_stalled_producer_is_rebuilt_when_the_broker_answers() -> None:
    # The dev-broker restart case: no error at all, just no acknowledgement.
    reasons: list[str] = []
    producer, factory = resilient(FakeProducer("stall"), FakeProducer("ack"), on_rebuild=reasons.append)
    producer.send("t", MSGS, timeout_s=5)
    assert len(factory.built) == 2 and factory.built[0].purged
    assert reasons == ["1 sends stalled while the broker answers metadata"]
    assert factory.built[1].sent == [("t", b"v1"), ("t", b"v2")]
    health = producer.health()
    assert health.ok and health.rebuilds == 1 and health.last_success is not None


def test_an_unreachable_broker_is_not_a_reason_to_rebuild() -> None:
    producer, factory = resilient(FakeProducer("stall", reachable=False))
    with pytest.raises(SendFailed) as info:
        producer.send("t", MSGS, timeout_s=0.5)
    assert "did not acknowledge 2 of 2" in str(info.value) and not info.value.permanent
    assert len(factory.built) == 1
    health = producer.health()
    assert not health.ok and "broker unreachable" in health.describe()


def test_stalls_before_rebuild_waits_for_the_same_messages_without_resending() -> None:
    stuck = FakeProducer("stall")
    producer, factory = resilient(stuck, stalls_before_rebuild=3, stall_timeout_s=0.1)
    threading.Timer(0.25, lambda: setattr(stuck, "mode", "ack")).start()
    producer.send("t", MSGS, timeout_s=5)
    assert len(factory.built) == 1
    assert stuck.sent == [("t", b"v1"), ("t", b"v2")]  # produced once, acknowledged late


@pytest.mark.parametrize(
    "code", [KafkaError.UNKNOWN_PRODUCER_ID, KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, KafkaError._FENCED]
)
def test_lost_producer_state_in_a_delivery_report_rebuilds(code: int) -> None:
    producer, factory = resilient(FakeProducer(code), FakeProducer("ack"))
    producer.send("t", MSGS, timeout_s=5)
    assert len(factory.built) == 2 and len(factory.built[1].sent) == 2


def test_a_fatal_error_callback_rebuilds_before_the_next_send() -> None:
    producer, factory = resilient(FakeProducer("ack"), FakeProducer("ack"))
    producer.send("t", MSGS[:1], timeout_s=5)
    factory.built[0].error_cb(KafkaError(KafkaError._FATAL, "producer fenced", fatal=True))
    producer.send("t", MSGS[1:], timeout_s=5)
    assert [len(p.sent) for p in factory.built] == [1, 1]


def test_a_synchronous_fatal_produce_error_rebuilds_and_retries() -> None:
    first = FakeProducer("ack")
    first.produce_error = KafkaError(KafkaError._FATAL, "fatal", fatal=True)
    producer, factory = resilient(first, FakeProducer("ack"))
    producer.send("t", MSGS, timeout_s=5)
    assert len(factory.built) == 2 and len(factory.built[1].sent) == 2


def test_retriable_errors_back_off_on_the_same_producer() -> None:
    flaky = FakeProducer("ack")
    flaky.buffer_errors = 3
    flaky.produce_error = KafkaError(KafkaError._TRANSPORT, "broker gone for a moment")
    producer, factory = resilient(flaky)
    producer.send("t", MSGS, timeout_s=5)
    assert len(factory.built) == 1 and len(flaky.sent) == 2


def test_a_retriable_delivery_error_that_persists_fails_at_the_deadline() -> None:
    producer, _ = resilient(FakeProducer(KafkaError._MSG_TIMED_OUT))
    started = time.monotonic()
    with pytest.raises(SendFailed):
        producer.send("t", MSGS, timeout_s=0.4)
    assert time.monotonic() - started < 3.0
    assert "messages failed" in producer.health().reason


def test_a_permanent_error_fails_at_once() -> None:
    producer, _ = resilient(FakeProducer(KafkaError.MSG_SIZE_TOO_LARGE))
    started = time.monotonic()
    with pytest.raises(SendFailed) as info:
        producer.send("t", MSGS, timeout_s=30)
    assert info.value.permanent and time.monotonic() - started < 5.0


def test_should_stop_ends_a_send_promptly() -> None:
    producer, _ = resilient(FakeProducer("stall", reachable=False))
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(SendFailed):
        producer.send("t", MSGS, timeout_s=60, should_stop=stop.is_set)
    assert time.monotonic() - started < 2.0


def test_concurrent_senders_share_one_rebuild() -> None:
    producer, factory = resilient(FakeProducer("stall"), FakeProducer("ack"))
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            producer.send("t", [(b"k", f"v{i}".encode(), None)], timeout_s=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(factory.built) == 2
    assert sorted(v for _, v in factory.built[1].sent) == [b"v0", b"v1", b"v2", b"v3"]


def dead_letter(offset: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    headers = [("source_topic", b"ev"), ("source_partition", b"0"), ("source_offset", str(offset).encode())]
    return (b"k", f"bad{offset}".encode(), headers)


def test_dead_letter_sink_retries_do_not_duplicate_acknowledged_records() -> None:
    fake = FakeProducer("ack")
    producer, _ = resilient(fake)
    sink = KafkaDeadLetterSink(producer, "dl", timeout_s=0.3)
    for offset in (1, 2):
        sink.send(*dead_letter(offset))
    sink.flush()
    fake.mode = "stall"
    fake.reachable = False
    for offset in (1, 2, 3):  # the batch retried after a later sink failed, plus one new record
        sink.send(*dead_letter(offset))
    with pytest.raises(DependencyUnavailable):
        sink.flush()
    fake.mode = "ack"
    for offset in (1, 2, 3):
        sink.send(*dead_letter(offset))
    sink.flush()
    assert [v for _, v in fake.sent] == [b"bad1", b"bad2", b"bad3"]


def test_dead_letter_sink_memory_is_bounded() -> None:
    producer, _ = resilient(FakeProducer("ack"))
    sink = KafkaDeadLetterSink(producer, "dl")
    sink.MEMORY = 5
    for offset in range(20):
        sink.send(*dead_letter(offset))
    sink.flush()
    assert isinstance(sink._acked, OrderedDict) and len(sink._acked) == 5


def test_dead_letter_too_large_for_the_topic_is_sent_without_its_value() -> None:
    class Strict(FakeProducer):
        def produce(
            self, topic: str, value: bytes | None = None, key: bytes | None = None, **kw: Any
        ) -> None:
            if len(value or b"") > 10:
                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large"))
            super().produce(topic, value, key, **kw)

    strict = Strict("ack")
    producer, _ = resilient(strict)
    sink = KafkaDeadLetterSink(producer, "dl")
    huge = (b"k", b"x" * 100, dead_letter(7)[2])
    sink.send(*dead_letter(6))
    sink.send(*huge)
    with pytest.raises(DependencyUnavailable):
        sink.flush()  # the batch is retried, as after any sink failure
    sink.send(*dead_letter(6))
    sink.send(*huge)
    sink.flush()
    assert [v for _, v in strict.sent] == [b"bad6", b""]
    assert not producer.health().ok or producer.health().last_success is not None


def test_a_fatal_error_raised_by_poll_rebuilds() -> None:
    class Raising(FakeProducer):
        def poll(self, timeout: float = 0.0) -> int:
            if self.pending:
                err = KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "desync", fatal=True)
                raise KafkaException(err)
            return 0

    producer, factory = resilient(Raising(), FakeProducer("ack"))
    producer.send("t", MSGS, timeout_s=5)
    assert len(factory.built) == 2 and len(factory.built[1].sent) == 2


def test_probe_asks_the_broker_only_when_no_send_succeeded_lately() -> None:
    fake = FakeProducer("ack", reachable=False)
    producer, _ = resilient(fake)
    assert producer.probe().describe().startswith("down (broker unreachable")
    fake.reachable = True
    assert producer.probe().describe() == "ok"
    producer.send("t", MSGS, timeout_s=5)
    fake.reachable = False
    assert producer.probe(fresh_s=30).ok  # a send just succeeded: no metadata request
    assert not producer.probe(fresh_s=0).ok


def test_a_different_record_at_the_same_coordinates_is_still_dead_lettered() -> None:
    # After a broker lost its state, a recreated topic starts at offset 0 again.
    fake = FakeProducer("ack")
    producer, _ = resilient(fake)
    sink = KafkaDeadLetterSink(producer, "dl")
    key, _, headers = dead_letter(0)
    sink.send(key, b"first poison", headers)
    sink.flush()
    sink.send(key, b"second poison", headers)
    sink.flush()
    assert [v for _, v in fake.sent] == [b"first poison", b"second poison"]
