"""The ingest bench's ceilings read the events topic as a consumer with the product's settings: the
parse ceiling only decodes, the sink ceiling stores every event, writes its Redis pipeline and commits."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from core.settings import Settings
from storage.kafka import flush_or_raise, make_consumer, make_producer
from tests.conftest import KafkaTopicHelper
from tooling.bench.common import storefront
from tooling.bench.ingest_ceiling import run
from tooling.producers.produce import event_record


def test_the_ceilings_read_every_record_and_the_sink_one_stores_them(
    settings: Settings, kafka_topics: KafkaTopicHelper, mongo_client: Any, redis_client: Any
) -> None:
    topic = kafka_topics.create(settings.kafka.topics.events, partitions=2)
    events = list(storefront(60, seed=7).events())
    producer = make_producer(settings.kafka)
    for key, value in (event_record(e) for e in events):
        producer.produce(topic, key=key, value=value)
    flush_or_raise(producer)
    ceiling_db = settings.mongo.database + "_ceiling"
    try:
        parsed = run("parse", settings, group=f"{settings.kafka.group_id}-parse", events=60, timeout_s=60)
        assert parsed["complete"] and parsed["events"] == 60
        assert ceiling_db not in mongo_client.list_database_names()  # parsing touches no sink

        sunk = run("sink", settings, group=f"{settings.kafka.group_id}-sink", events=60, timeout_s=60)
        assert sunk["complete"] and sunk["events"] == 60 and sunk["events_per_s"] > 0
        stored = {d["_id"] for d in mongo_client[ceiling_db]["events"].find({}, {"_id": 1})}
        assert stored == {e.event_id for e in events}
        prefix = settings.redis.key_prefix + "ceiling:"
        assert redis_client.zcard(f"{prefix}pop:all") == len({e.item_id for e in events})
        # It committed what it stored, as the consumer does.
        reader = make_consumer(settings.kafka, group_id=f"{settings.kafka.group_id}-sink")
        try:
            committed = reader.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        finally:
            reader.close()
        assert sum(tp.offset for tp in committed) == 60
    finally:
        mongo_client.drop_database(ceiling_db)
