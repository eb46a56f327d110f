"""End-of-run checks of `streamrec bench chaos`: drain, the dead-letter topic, MongoDB's ids, Redis
against a rebuild, and the revision measured. Each reads the servers directly, never the product's
own counters."""

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from typing import Any

from rich.console import Console

from cli.chaos_plan import compare_redis
from cli.chaos_run import Recorder
from cli.processes import REPO_ROOT
from core.settings import Settings

DRAIN_MAX_S = 300.0


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{'-dirty' if dirty else ''}" if rev else "unknown"


def drain(
    settings: Settings, rec: Recorder, expected: int, console: Console, idle_limit_s: float = 60.0
) -> dict[str, Any]:
    """Wait until MongoDB holds at least every accepted event and the consumer has been idle a moment."""
    import pymongo

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=5000
    )
    events = client[settings.mongo.database]["events"]
    started = time.monotonic()
    count, last_progress, last_change = -1, -1.0, time.monotonic()
    try:
        with console.status("draining: waiting for the consumer to store everything") as status:
            while time.monotonic() - started < DRAIN_MAX_S:
                progress = rec.progress[-1][1] if rec.progress else 0.0
                if progress != last_progress:
                    last_progress, last_change = progress, time.monotonic()
                with contextlib.suppress(pymongo.errors.PyMongoError):
                    count = int(events.count_documents({}))
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

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        events = client[settings.mongo.database]["events"]
        return [str(d["_id"]) for d in events.find({}, {"_id": 1}).batch_size(10_000)]
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


def read_topic(
    settings: Settings, topic: str, *, idle_s: float = 5.0, max_s: float = 120.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of ``topic`` from the beginning (until nothing new arrives for ``idle_s``)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    from storage.kafka import make_consumer

    consumer = make_consumer(
        settings.kafka, f"chaos-read-{uuid.uuid4().hex[:8]}", **{"enable.auto.commit": False}
    )
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        started = last = time.monotonic()
        while time.monotonic() - last < idle_s and time.monotonic() - started < max_s:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    out.append((msg.key(), msg.value()))
                    last = time.monotonic()
    finally:
        consumer.close()
    return out
