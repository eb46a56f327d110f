"""The consumer end to end on real servers: each bad input ends in MongoDB once or in the dead letters."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from consumer.rebuild import diff_snapshots, rebuild_cache
from consumer.runner import ConsumerRunner
from consumer.wiring import open_kafka
from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.impressions_mongo import MongoImpressionStore
from storage.kafka import flush_or_raise, make_consumer, make_producer, wait_for_assignment
from storage.realtime_state import RedisRealtimeState


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@contextmanager
def running_consumer(settings: Settings) -> Iterator[tuple[ConsumerRunner, threading.Thread, dict[str, Any]]]:
    store = MongoEventStore.from_settings(settings.mongo)
    impressions = MongoImpressionStore.from_settings(settings.mongo)
    state = RedisRealtimeState.from_settings(settings.redis)
    runner = ConsumerRunner(settings, store, state, open_kafka(settings), impressions=impressions)
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["code"] = runner.run()
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, name="consumer", daemon=True)
    thread.start()
    try:
        yield runner, thread, result
    finally:
        runner.request_stop()
        thread.join(30)
        impressions.close()
        store.close()


def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list[Any]:
    consumer = make_consumer(settings.kafka, group_id=f"reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    try:
        wait_for_assignment(consumer, timeout_s=30)
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
        time.sleep(1.0)  # anything beyond the expected count would show up now
        got += [m for m in consumer.consume(100, 0.5) if m.error() is None]
        return got
    finally:
        consumer.close()


def event(eid: str, user: Any = "u1", **over: Any) -> bytes:
    body = {
        "event_id": eid,
        "event_type": "view",
        "user_id": user,
        "item_id": "i1",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    body.update(over)
    return orjson.dumps(body)


def test_bad_inputs_are_dead_lettered_and_never_stop_the_consumer(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=1)
    kafka_topics.create(topics.items, partitions=1)
    producer = make_producer(settings.kafka)
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    bad = {
        "bad_json": (b"u1", b'{"event_id": "x", '),
        "not_utf8": (b"u1", b"\xff\xfe\xfa{}"),
        "missing_field": (b"u1", orjson.dumps({"event_id": "m", "event_type": "view", "user_id": "u1"})),
        "wrong_type": (b"u1", event("w", user=12345)),
        "unknown_event_type": (b"u1", event("t", event_type="teleport")),
        "oversized": (b"u1", b'{"event_id":"big","pad":"' + b"x" * 1_000_000 + b'"}'),
        "missing_key": (b"", event("k")),
        "future_timestamp": (b"u1", event("f", timestamp=future)),
    }
    with running_consumer(settings) as (_runner, thread, result):
        producer.produce(topics.events, key=b"u1", value=event("e1", item_id="first"))
        for key, value in bad.values():
            producer.produce(topics.events, key=key, value=value)
        producer.produce(topics.events, key=b"u1", value=event("e1", item_id="second"))  # same batch
        producer.produce(topics.items, key=b"i1", value=b'{"item_id": "i1", "title": "Mug", "category": "c"}')
        producer.produce(topics.items, key=b"i2", value=b'{"item_id": "i2", "price": "cheap"}')
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= 1, 60, "first event stored")
        time.sleep(1.0)
        producer.produce(topics.events, key=b"u1", value=event("e1", item_id="third"))  # a later batch
        producer.produce(topics.events, key=b"u2", value=event("e2", user="u2"))
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= 2, 30, "second event stored")
        assert thread.is_alive(), result
        state = RedisRealtimeState.from_settings(settings.redis)
        wait_until(
            lambda: state.applied_offsets([(topics.events, 0)])[(topics.events, 0)] >= 11, 30, "applied"
        )

    assert result == {"code": 0}
    docs = {d["_id"]: d for d in mongo_db["events"].find()}
    assert set(docs) == {"e1", "e2"}
    assert docs["e1"]["item_id"] == "first" and docs["e1"]["src"]["offset"] == 0
    assert mongo_db["items"].find_one({"_id": "i1"})["title"] == "Mug"
    assert mongo_db["items"].count_documents({}) == 1

    # + the item with a bad price, + the two reuses of e1 with other content (conflicting duplicates).
    dead = read_topic(settings, topics.dead_letter, expected=len(bad) + 3)
    by_code = {dict(m.headers())["error_code"].decode(): m for m in dead}
    assert len(dead) == len(bad) + 3
    assert set(by_code) == set(bad) | {"conflicting_duplicate"}
    conflicts = [m for m in dead if dict(m.headers())["error_code"] == b"conflicting_duplicate"]
    assert sorted(orjson.loads(m.value())["item_id"] for m in conflicts) == ["second", "third"]
    for code, (key, value) in bad.items():
        msg = (
            by_code[code]
            if code != "wrong_type"
            else next(
                m
                for m in dead
                if dict(m.headers())["source_topic"] == topics.events.encode()
                and dict(m.headers())["error_code"] == b"wrong_type"
            )
        )
        headers = dict(msg.headers())
        assert msg.value() == value, code
        assert (msg.key() or b"") == key, code
        assert headers["reason"], code
        assert headers["source_topic"] == topics.events.encode()
        assert headers["source_partition"] == b"0"
        assert int(headers["source_offset"]) >= 1
        assert datetime.fromisoformat(headers["failed_at"].decode()).tzinfo is not None
    item_dl = [m for m in dead if dict(m.headers())["source_topic"] == topics.items.encode()]
    assert len(item_dl) == 1 and item_dl[0].key() == b"i2"

    # Redis effects exactly once: e1 counted once despite three copies, and Redis equals a rebuild.
    state = RedisRealtimeState.from_settings(settings.redis)
    now_s = time.time()
    assert state.snapshot(now_s)["pop"]["all"] == {"first": 1.0, "i1": 1.0}
    store = MongoEventStore.from_settings(settings.mongo)
    rebuilt = RedisRealtimeState.from_settings(settings.redis, prefix=settings.redis.key_prefix + "rb:")
    rebuild_cache(settings, store, rebuilt, now_s=now_s)
    store.close()
    assert diff_snapshots(state.snapshot(now_s), rebuilt.snapshot(now_s)) == []
