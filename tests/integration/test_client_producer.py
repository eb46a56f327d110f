"""streamrec_client.EventProducer against a real broker: records keyed by user_id (items by item_id),
on the partition Java's default partitioner (and kafkajs') picks for that key, with values the
consumer's parser accepts; invalid events are refused before sending; delivery errors are raised."""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError

from core.events import InteractionEvent, ItemUpdate, parse_interaction, parse_item_update
from core.settings import Settings
from storage.kafka import make_consumer, wait_for_assignment
from streamrec_client import DeliveryError, EventProducer, InvalidEvent
from tests.conftest import KafkaTopicHelper
from tooling.devstack.probes import free_port

PARTITIONS = 4


def murmur2(key: bytes) -> int:
    """org.apache.kafka.common.utils.Utils.murmur2, as an unsigned 32-bit value."""
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    whole = len(key) - len(key) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[whole:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    """The Java producer's default partition for a keyed record: toPositive(murmur2(key)) % n."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_java_partition_matches_known_kafka_values() -> None:
    # Utils.murmur2 test vectors from Apache Kafka's UtilsTest (signed int results).
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    for key, signed in vectors.items():
        assert murmur2(key) == signed & 0xFFFFFFFF, key


def _consume(settings: Settings, topic: str, want: int) -> list[tuple[int, bytes, bytes]]:
    consumer = make_consumer(settings.kafka)
    consumer.subscribe([topic])
    wait_for_assignment(consumer)
    got: list[tuple[int, bytes, bytes]] = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < want and time.monotonic() < deadline:
            for msg in consumer.consume(want - len(got), 0.5):
                err = msg.error()
                assert err is None or err.code() == KafkaError._PARTITION_EOF, err
                if err is None:
                    partition, key, value = msg.partition(), msg.key(), msg.value()
                    assert partition is not None and isinstance(key, bytes) and isinstance(value, bytes)
                    got.append((partition, key, value))
    finally:
        consumer.close()
    return got


def test_events_are_keyed_by_user_on_the_java_partition(
    settings: Settings, kafka_topics: KafkaTopicHelper
) -> None:
    events = kafka_topics.create(settings.kafka.topics.events, partitions=PARTITIONS)
    items = kafka_topics.create(settings.kafka.topics.items, partitions=2)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    users = [f"shopper-{n}" for n in range(8)] + ["ユーザー-9"]
    sent = 0
    with EventProducer(settings.kafka.bootstrap, events_topic=events, items_topic=items) as producer:
        for n in range(36):
            user = users[n % len(users)]
            data = {
                "event_id": f"e-{n}",
                "event_type": "view",
                "user_id": user,
                "item_id": f"sku-{n % 5}",
                "timestamp": now_ms - 1000 + n,
            }
            parsed = producer.send(data if n % 2 else InteractionEvent.model_validate(data))
            assert parsed.user_id == user
            sent += 1
        producer.send_item({"item_id": "sku-new", "title": "Mug", "category": "kitchen", "price": 9.5})
        producer.send_item(ItemUpdate(item_id="sku-1", available=False))
        with pytest.raises(InvalidEvent) as refused:
            producer.send(
                {"event_id": "bad", "event_type": "like", "user_id": "u", "item_id": "i", "timestamp": 1}
            )
        assert refused.value.code == "unknown_event_type"
        with pytest.raises(InvalidEvent) as refused:
            producer.send(
                {"event_id": "e", "event_type": "rate", "user_id": "u", "item_id": "i", "timestamp": 1}
            )
        assert (refused.value.code, refused.value.field) == ("missing_field", "value")

    records = _consume(settings, events, sent + 1)
    assert len(records) == sent, "every valid event arrived once, the refused ones never"
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, value in records:
        event = parse_interaction(value)
        assert isinstance(event, InteractionEvent), event  # what the consumer accepts
        assert key == event.user_id.encode("utf-8")
        assert partition == java_partition(key, PARTITIONS), "not where a Java or kafkajs producer puts it"
        partitions[key].add(partition)
    assert len(partitions) == len(users) and all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1, "keys spread over partitions"

    updates = _consume(settings, items, 2)
    assert sorted(key for _, key, _ in updates) == [b"sku-1", b"sku-new"]
    for partition, key, value in updates:
        update = parse_item_update(value)
        assert isinstance(update, ItemUpdate) and update.item_id.encode() == key
        assert partition == java_partition(key, 2)


def test_a_record_the_broker_never_acknowledges_is_a_delivery_error() -> None:
    nobody = f"127.0.0.1:{free_port()}"
    producer = EventProducer(nobody, config={"message.timeout.ms": 1500})
    producer.send(
        {
            "event_id": "e",
            "event_type": "click",
            "user_id": "u-7",
            "item_id": "i",
            "timestamp": 1_700_000_000_000,
        }
    )
    with pytest.raises(DeliveryError) as failed:
        producer.flush(10)
    (topic, key, error) = failed.value.failures[0]
    assert (topic, key) == ("streamrec.events", "u-7") and "timed out" in error.lower()
    producer.flush(1)  # reported once: nothing left to raise
