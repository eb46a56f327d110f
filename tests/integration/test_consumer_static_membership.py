"""Static group membership on a real broker: the consumer joins with its instance id, consumes, and a
successor started under the same id after it goes away consumes what was produced meanwhile."""

from __future__ import annotations

from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.kafka import flush_or_raise, make_producer
from tests.conftest import KafkaTopicHelper
from tests.integration.test_consumer_e2e import event, running_consumer, wait_until


def produce(settings: Settings, first: int, count: int) -> None:
    producer = make_producer(settings.kafka)
    for n in range(first, first + count):
        user = f"u{n % 3}"
        producer.produce(settings.kafka.topics.events, key=user.encode(), value=event(f"s{n}", user=user))
    flush_or_raise(producer)


def test_a_static_member_consumes_and_its_successor_takes_over(
    settings: Settings, kafka_topics: KafkaTopicHelper
) -> None:
    for name in (
        settings.kafka.topics.events,
        settings.kafka.topics.items,
        settings.kafka.topics.impressions,
    ):
        kafka_topics.create(name, partitions=2)
    kafka_topics.create(settings.kafka.topics.dead_letter)
    static = settings.model_copy(
        update={"consumer": settings.consumer.model_copy(update={"instance_id": "it-{hostname}"})}
    )
    store = MongoEventStore.from_settings(settings.mongo)
    try:
        produce(settings, 0, 10)
        with running_consumer(static) as (runner, _thread, result):
            assert runner.static
            wait_until(lambda: store.count_events() >= 10, 60, "the first 10 events stored")
            assert runner.static and "error" not in result  # the broker kept the static member
        produce(settings, 10, 10)
        with running_consumer(static) as (runner, _thread, result):
            wait_until(lambda: store.count_events() >= 20, 60, "the next 10 events stored")
            assert "error" not in result
        assert store.count_events() == 20
    finally:
        store.close()
