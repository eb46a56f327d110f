"""Consumer-group semantics through storage/kafka.py against a real broker.

What was committed is never delivered again to the group; what was consumed but not committed is.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from core.settings import Settings
from storage.kafka import flush_or_raise, make_consumer, make_producer, wait_for_assignment
from tests.conftest import KafkaTopicHelper

N_MESSAGES = 24
N_COMMITTED = 10


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


def _record(msg: Message) -> Record:
    topic, partition, offset, key, value = msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value()
    assert topic is not None and partition is not None and offset is not None
    assert isinstance(key, bytes) and isinstance(value, bytes)
    return Record(topic, partition, offset, key, value)


def _consume(consumer: Consumer, want: int, timeout_s: float = 30.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        for msg in consumer.consume(want - len(got), 0.5):
            err = msg.error()
            assert err is None or err.code() == KafkaError._PARTITION_EOF, f"consumer error: {err}"
            if err is None:
                got.append(_record(msg))
    return got


def _quiet(consumer: Consumer, seconds: float) -> list[Record]:
    """Everything that arrives within `seconds` (expected: nothing)."""
    got: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(_record(m) for m in consumer.consume(100, 0.5) if m.error() is None)
    return got


def _commit_upto(consumer: Consumer, records: list[Record]) -> dict[int, int]:
    """Commit, per partition, everything up to the last of `records`; returns partition → last offset."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    offsets = [TopicPartition(records[0].topic, p, off + 1) for p, off in last.items()]
    consumer.commit(offsets=offsets, asynchronous=False)
    return last


def _subscribed(settings: Settings, topic: str) -> Consumer:
    consumer = make_consumer(settings.kafka)
    consumer.subscribe([topic])
    wait_for_assignment(consumer)
    return consumer


def test_committed_messages_stay_consumed_and_uncommitted_are_redelivered(
    settings: Settings, kafka_topics: KafkaTopicHelper
) -> None:
    topic = kafka_topics.create(settings.kafka.topics.events, partitions=2)

    producer = make_producer(settings.kafka)
    sent = {f"msg-{i}".encode(): f"user-{i % 6}".encode() for i in range(N_MESSAGES)}
    for value, key in sent.items():
        producer.produce(topic, key=key, value=value)
    flush_or_raise(producer)

    first = _subscribed(settings, topic)
    try:
        received = _consume(first, N_MESSAGES)
        assert sorted(m.value for m in received) == sorted(sent), "every produced message arrives once"
        assert all(sent[m.value] == m.key for m in received), "keys travel with their values"
        partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
        for m in received:
            partitions_of_key[m.key].add(m.partition)
        assert all(len(p) == 1 for p in partitions_of_key.values()), "one key, one partition"

        # Consumption order is in order within each partition, so a prefix is a per-partition prefix.
        committed_msgs, uncommitted_msgs = received[:N_COMMITTED], received[N_COMMITTED:]
        last_offset = _commit_upto(first, committed_msgs)
    finally:
        first.close()

    second = _subscribed(settings, topic)
    try:
        committed = second.committed([TopicPartition(topic, p) for p in last_offset], timeout=10)
        assert {tp.partition: tp.offset for tp in committed} == {p: off + 1 for p, off in last_offset.items()}
        redelivered = _consume(second, len(uncommitted_msgs))
        redelivered += _quiet(second, 2.0)
        assert sorted(m.value for m in redelivered) == sorted(m.value for m in uncommitted_msgs)
        _commit_upto(second, redelivered)
    finally:
        second.close()

    third = _subscribed(settings, topic)
    try:
        assert _quiet(third, 3.0) == [], "a fully committed group receives nothing again"
    finally:
        third.close()
