"""End-of-run checks of `streamrec bench chaos`: drain, the dead-letter topic, MongoDB's ids, Redis
against a rebuild, and the revision measured. Each reads the servers directly, never the product's
own counters."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from rich.console import Console

from core.settings import Settings
from tooling.bench.chaos_plan import compare_redis
from tooling.bench.chaos_run import Recorder

DRAIN_MAX_S = 300.0


def drain(
    settings: Settings, rec: Recorder, expected: int, console: Console, idle_limit_s: float = 60.0
) -> dict[str, Any]:
    """Wait until MongoDB holds at least every accepted event and the consumer has been idle a moment."""
    import pymongo

    from storage.event_store import MongoEventStore

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    store = MongoEventStore(client[settings.mongo.database])
    started = time.monotonic()
    count, last_progress, last_change = -1, -1.0, time.monotonic()
    try:
        with console.status("draining: waiting for the consumer to store everything") as status:
            while time.monotonic() - started < DRAIN_MAX_S:
                progress = rec.progress[-1][1] if rec.progress else 0.0
                if progress != last_progress:
                    last_progress, last_change = progress, time.monotonic()
                with contextlib.suppress(pymongo.errors.PyMongoError):
                    count = store.count_events()
                idle = time.monotonic() - last_change
                status.update(f"draining: {count:,}/{expected:,} stored, consumer idle {idle:.0f}s")
                if (count >= expected and idle >= 5.0) or idle >= idle_limit_s:
                    break
                time.sleep(1.0)
    finally:
        client.close()
    return {"drain_s": round(time.monotonic() - started, 1), "drained": count >= expected}


def stored_ids(settings: Settings) -> list[str]:
    import pymongo

    from storage.event_store import MongoEventStore

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        return list(MongoEventStore(client[settings.mongo.database]).event_ids())
    finally:
        client.close()


def redis_check(settings: Settings) -> dict[str, Any]:
    """The live state against a rebuild from MongoDB into a second key prefix, entry by entry."""
    import pymongo

    from consumer.rebuild import rebuild_cache
    from storage.event_store import MongoEventStore
    from storage.realtime_state import RealtimeState, RedisRealtimeState, make_redis

    redis = make_redis(settings.redis)
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        now_s = time.time()
        live: RealtimeState = RedisRealtimeState(redis, settings.redis.key_prefix)
        rebuilt: RealtimeState = RedisRealtimeState(redis, settings.redis.key_prefix + "chaos-rebuilt:")
        rebuild_cache(settings, MongoEventStore(client[settings.mongo.database]), rebuilt, now_s=now_s)
        return compare_redis(live.snapshot(now_s), rebuilt.snapshot(now_s))
    finally:
        client.close()
        redis.close()


Record = tuple[int, int, bytes | None, bytes | None]  # partition, offset, key, value


def scan_topic(settings: Settings, topic: str, *, idle_s: float = 5.0, max_s: float = 120.0) -> list[Record]:
    """Every record of ``topic`` from the beginning (until nothing new arrives for ``idle_s``).

    Read to the end rather than up to the high watermark: the dev broker's watermarks are wrong.
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from storage.kafka import make_consumer

    consumer = make_consumer(
        settings.kafka, f"chaos-read-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False}
    )
    out: list[Record] = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        started = last = time.monotonic()
        while time.monotonic() - last < idle_s and time.monotonic() - started < max_s:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    out.append((int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value()))
                    last = time.monotonic()
    finally:
        consumer.close()
    return out


def read_topic(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    return [(key, value) for _p, _o, key, value in scan_topic(settings, topic)]


def locate_lost(settings: Settings, lost: set[str], limit: int = 20) -> list[dict[str, Any]]:
    """Where up to ``limit`` lost events are: their partition and offset on the events topic and the
    consumer group's committed offset there. Committed past the record means the consumer moved on
    without storing it; not committed means it never got that far (stuck or paused); absent from the
    topic means Kafka (or the API) acknowledged a record that was never written."""
    from confluent_kafka import TopicPartition

    from storage.kafka import make_consumer
    from tooling.bench.chaos_plan import event_id_of

    wanted = set(sorted(lost)[:limit])
    topic = settings.kafka.topics.events
    found = {
        event_id: (partition, offset)
        for partition, offset, _key, value in scan_topic(settings, topic)
        if (event_id := event_id_of(value)) in wanted
    }
    group = make_consumer(settings.kafka, settings.kafka.group_id, **{"enable.auto.commit": False})
    try:
        partitions = sorted({p for p, _o in found.values()})
        committed = {
            tp.partition: tp.offset
            for tp in group.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        }
    finally:
        group.close()
    out: list[dict[str, Any]] = []
    for event_id in sorted(wanted):
        if event_id not in found:
            out.append({"event_id": event_id, "where": "not_in_topic"})
            continue
        partition, offset = found[event_id]
        done = committed.get(partition, -1)
        where = "committed_not_stored" if done > offset else "not_consumed"
        out.append(
            {
                "event_id": event_id,
                "partition": partition,
                "offset": offset,
                "committed": done,
                "where": where,
            }
        )
    return out
