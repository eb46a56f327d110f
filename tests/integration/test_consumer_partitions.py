"""Explicit partition ownership on a real broker: a consumer with a share assigns itself its partitions
without joining the group, commits under the group id, and a successor with the same share resumes
at the committed offsets (nothing read twice, nothing skipped)."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from core.settings import ConsumerSettings, Settings
from storage.kafka import flush_or_raise, make_consumer, make_producer
from tests.integration.test_consumer_e2e import event, running_consumer, wait_until


def _with_share(settings: Settings, share: str) -> Settings:
    consumer = ConsumerSettings.model_validate({**settings.consumer.model_dump(), "partitions": share})
    return settings.model_copy(update={"consumer": consumer})


def _committed(settings: Settings, topic: str, partitions: int) -> list[int]:
    reader = make_consumer(settings.kafka)  # the same group id: reads what the runners committed
    try:
        found = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in found]
    finally:
        reader.close()


def test_a_share_is_owned_without_the_group_and_resumed_at_the_committed_offsets(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=2)
    kafka_topics.create(topics.items, partitions=1)
    producer = make_producer(settings.kafka)
    first = _with_share(settings, "0/2")  # events[0] and items[0]; events[1] belongs to share 1/2
    for n in range(6):
        producer.produce(topics.events, key=b"u", value=event(f"a{n}", user=f"u{n}"), partition=n % 2)
    flush_or_raise(producer)
    with running_consumer(first) as (runner, thread, result):
        wait_until(lambda: mongo_db["events"].count_documents({}) >= 3, 60, "share 0/2 stored its 3 events")
        assert thread.is_alive(), result
        # What the runner assigned itself (the client is not called from this thread: it is in use).
        assert runner._manual is not None
        assert sorted(runner._manual.assigned) == [(topics.events, 0), (topics.items, 0)]
        wait_until(lambda: _committed(settings, topics.events, 2)[0] == 3, 30, "offset 3 committed")
    assert mongo_db["events"].count_documents({}) == 3  # partition 1 was never read
    assert _committed(settings, topics.events, 2)[1] < 0  # nor committed

    for n in range(6, 10):
        producer.produce(topics.events, key=b"u", value=event(f"a{n}", user=f"u{n}"), partition=0)
    flush_or_raise(producer)
    with running_consumer(_with_share(settings, "0/2")) as (_runner, thread, result):
        wait_until(lambda: mongo_db["events"].count_documents({}) >= 7, 60, "the successor stored 4 more")
        wait_until(lambda: _committed(settings, topics.events, 2)[0] == 7, 30, "offset 7 committed")
        assert thread.is_alive(), result
    ids = sorted(d["_id"] for d in mongo_db["events"].find({}, {"_id": 1}))
    assert ids == sorted(f"a{n}" for n in (0, 2, 4, 6, 7, 8, 9))
