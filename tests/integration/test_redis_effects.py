"""Exactly-once Redis effects on real servers: the guard's contract, a zombie member, Redis down,
Redis emptied (FLUSHALL) under a running consumer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from pydantic import SecretStr

from consumer.batch import RawMessage
from consumer.processor import BatchProcessor
from consumer.runner import KafkaDeadLetterSink
from core.realtime_ops import ApplyStatus, Guard, Op
from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.impressions import InMemoryImpressionStore
from storage.kafka import flush_or_raise, make_producer
from storage.realtime_state import InMemoryRealtimeState, RealtimeState, RedisRealtimeState
from tests.integration.test_consumer_e2e import read_topic, running_consumer, wait_until
from tests.integration.test_consumer_resilience import (
    assert_redis_equals_rebuild,
    expected_pop,
    make_events,
)
from tests.integration.test_consumer_resilience import own_redis as _own_redis

# A redis-server of the test's own (append-only, so a restart keeps the data); FLUSHALL is safe on it.
private_redis = pytest.fixture(_own_redis.__wrapped__, name="private_redis")  # type: ignore[attr-defined]

NOW_S = time.time()


def _guard_calls(state: RealtimeState) -> list[Any]:
    k = state.keys
    zincr = [Op("zincrby", k.pop_all(), ("i1", 1.5)), Op("sadd", k.seen("u1"), ("i1", "i2"))]
    out: list[Any] = [
        state.apply(zincr, {("ev", 0): 3}, expected={("ev", 0): -1}, generation="g0"),  # no marker yet
        state.guard([("ev", 0)]),
    ]
    state.finish_rebuild("g0", {("ev", 0): 2})
    out += [
        state.guard([("ev", 0), ("ev", 1)]),
        state.apply(zincr, {("ev", 0): 3}, expected={("ev", 0): 2}, generation="g0"),
        state.apply(zincr, {("ev", 0): 4}, expected={("ev", 0): 2}, generation="g0"),  # moved: refused
        state.apply(zincr, {("ev", 1): 0}, expected={("ev", 0): 3, ("ev", 1): -1}, generation="g1"),
        state.apply(
            [Op("hset", k.item("i1"), (("title", "Mug"), ("price", "2.5"))), Op("incr", k.marker("u1"))],
            {("ev", 1): 0},
            expected={("ev", 0): 3, ("ev", 1): -1},
            generation="g0",
        ),
        state.guard([("ev", 0), ("ev", 1)]),
    ]
    state.finish_rebuild("g2", {("ev", 0): 1, ("ev", 1): 5})  # offsets never go down
    out.append(state.guard([("ev", 0), ("ev", 1)]))
    lease = state.acquire_rebuild_lock(30)
    out += [lease is not None, state.acquire_rebuild_lock(30) is None]
    assert lease is not None
    lease.extend()
    lease.release()
    again = state.acquire_rebuild_lock(30)
    out.append(again is not None)
    assert again is not None
    again.release()
    state.drop_generation()
    out += [state.guard([]), state.clear_derived() >= 0, state.snapshot(NOW_S)]
    return out


def test_guard_contract_redis_and_twin_agree(settings: Settings, redis_client) -> None:
    live = _guard_calls(RedisRealtimeState.from_settings(settings.redis))
    twin = _guard_calls(InMemoryRealtimeState(settings.redis.key_prefix))
    assert live == twin
    assert live[0] is ApplyStatus.STALE_GENERATION
    assert live[3:7] == [
        ApplyStatus.OK,
        ApplyStatus.STALE_OFFSETS,
        ApplyStatus.STALE_GENERATION,
        ApplyStatus.OK,
    ]
    assert live[7] == Guard("g0", {("ev", 0): 3, ("ev", 1): 0})
    assert live[8] == Guard("g2", {("ev", 0): 3, ("ev", 1): 5})
    assert live[12] == Guard(None, {})
    # clear_derived keeps markers, applied offsets and the meta keys, drops the rest
    left = {k.decode() for k in redis_client.scan_iter(match=f"{settings.redis.key_prefix}*")}
    keys = RedisRealtimeState.from_settings(settings.redis).keys
    assert left == {keys.marker("u1"), keys.applied("ev", 0), keys.applied("ev", 1)}


class _HookedRedisState(RedisRealtimeState):
    """Another client of the same Redis that runs ``hook`` once, right after its first guard read."""

    def __init__(self, settings: Settings, hook: Callable[[], object]) -> None:
        client = RedisRealtimeState.from_settings(settings.redis).client
        super().__init__(client, settings.redis.key_prefix)
        self._hook: Callable[[], object] | None = hook

    def guard(self, partitions: Iterable[tuple[str, int]]) -> Guard:
        guard = super().guard(partitions)
        hook, self._hook = self._hook, None
        if hook is not None:
            hook()
        return guard


def _event(eid: str, offset: int, user: str, item: str, etype: str = "view") -> RawMessage:
    body = {
        "event_id": eid,
        "event_type": etype,
        "user_id": user,
        "item_id": item,
        "timestamp": int((NOW_S - 60) * 1000),
    }
    return RawMessage("ev-z", 0, offset, user.encode(), orjson.dumps(body))


def test_zombie_member_and_its_successor_apply_a_batch_once(settings: Settings, mongo_db) -> None:
    """A member whose partition was revoked while it held a batch (the zombie) read the guard before
    its successor applied the same batch; its own apply comes after. Popularity and recent lists
    change once, and Redis equals a rebuild from MongoDB."""
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topics": settings.kafka.topics.model_copy(update={"events": "ev-z"})}
            )
        }
    )
    store = MongoEventStore.from_settings(settings.mongo)
    shared = RedisRealtimeState.from_settings(settings.redis)
    shared.finish_rebuild("g0", {})
    batch = [
        _event(f"e{i}", i, f"u{i % 3}", f"i{i % 4}", "purchase" if i == 5 else "view") for i in range(12)
    ]
    dlq = KafkaDeadLetterSink(make_producer(settings.kafka), settings.kafka.topics.dead_letter)
    shown = InMemoryImpressionStore()
    successor = BatchProcessor(
        settings, store, RedisRealtimeState.from_settings(settings.redis), dlq, impressions=shown
    )
    zombie = BatchProcessor(
        settings,
        store,
        _HookedRedisState(settings, lambda: successor.process(batch)),
        dlq,
        impressions=shown,
    )
    try:
        zombie.process(batch)
        zombie.process(batch[:7])  # and the zombie's shorter, older batch after that
        live = shared.snapshot(time.time())
        assert live["pop"]["all"] == {"i0": 3.0, "i1": 7.0, "i2": 3.0, "i3": 3.0}
        assert {u: len(r) for u, r in live["recent"].items()} == {"u0": 4, "u1": 4, "u2": 4}
        assert shared.applied_offsets([("ev-z", 0)]) == {("ev-z", 0): 11}
        assert mongo_db["events"].count_documents({}) == 12
    finally:
        store.close()
    assert_redis_equals_rebuild(settings)


def _with_redis(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": SecretStr(url)}),
            "consumer": settings.consumer.model_copy(
                update={"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "batch_size": 50}
            ),
        }
    )


def test_redis_down_every_batch_is_stored_and_effects_follow_once(
    settings: Settings,
    private_redis,
    kafka_topics,
    mongo_db,
    caplog,
) -> None:
    url, start_redis, stop_redis = private_redis
    settings = _with_redis(settings, url)
    caplog.set_level(logging.INFO)
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=1)
    events = make_events(200, seed=5)
    first, second = events[:100], events[100:]
    producer = make_producer(settings.kafka)
    live = RedisRealtimeState.from_settings(settings.redis)
    with running_consumer(settings) as (_runner, thread, result):
        for key, value, _ in first:
            producer.produce(topics.events, key=key, value=value)
        flush_or_raise(producer)
        wait_until(
            lambda: live.applied_offsets([(topics.events, 0)])[(topics.events, 0)] == len(first) - 1,
            60,
            "first part applied",
        )
        stop_redis()
        # The poison record goes first, so the batch held up by the outage holds it.
        producer.produce(topics.events, key=b"u1", value=b'{"event_id": "poison"')
        for key, value, _ in second:
            producer.produce(topics.events, key=key, value=value)
        flush_or_raise(producer)
        unique = len({b["event_id"] for _, _, b in events})
        # The system of record does not wait for Redis: every batch (50 records each, so several of
        # them) is stored and the dead letter sent while Redis is down (consumer.store_ahead).
        wait_until(
            lambda: mongo_db["events"].count_documents({}) >= unique, 60, "all stored while Redis is down"
        )
        dead = read_topic(settings, topics.dead_letter, expected=1, timeout_s=30)
        assert [dict(m.headers())["error_code"] for m in dead] == [b"bad_json"]
        assert "event=redis_unavailable action=store_ahead_then_reread" in caplog.text
        assert thread.is_alive(), result
        start_redis()
        wait_until(
            lambda: live.applied_offsets([(topics.events, 0)])[(topics.events, 0)] == len(events),
            60,
            "effects applied after Redis came back",
        )
    assert result == {"code": 0}
    assert live.snapshot(time.time())["pop"]["all"] == expected_pop(events)
    assert_redis_equals_rebuild(settings)
    assert len(read_topic(settings, topics.dead_letter, expected=2, timeout_s=5)) == 1  # sent once


def test_flushed_redis_is_detected_and_rebuilt_by_the_consumer(
    settings: Settings,
    private_redis,
    kafka_topics,
    mongo_db,
    caplog,
) -> None:
    url, _start, _stop = private_redis
    settings = _with_redis(settings, url)
    caplog.set_level(logging.INFO)
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=2)
    events = make_events(240, seed=9)
    first, second = events[:120], events[120:]
    producer = make_producer(settings.kafka)
    live = RedisRealtimeState.from_settings(settings.redis)
    admin = redis.Redis.from_url(url)
    before = REGISTRY.get_sample_value("streamrec_consumer_redis_rebuilds_total") or 0.0
    with running_consumer(settings) as (_runner, thread, result):
        for key, value, _ in first:
            producer.produce(topics.events, key=key, value=value)
        flush_or_raise(producer)
        unique_first = len({b["event_id"] for _, _, b in first})
        wait_until(lambda: mongo_db["events"].count_documents({}) >= unique_first, 60, "first part stored")
        wait_until(lambda: sum(live.snapshot(time.time())["pop"]["all"].values()) > 0, 30, "effects")
        time.sleep(1.0)  # let the last batch's Redis step finish
        first_rebuilds = REGISTRY.get_sample_value("streamrec_consumer_redis_rebuilds_total") or 0.0
        admin.flushall()  # a restart without persistence
        for key, value, _ in second:
            producer.produce(topics.events, key=key, value=value)
        flush_or_raise(producer)
        unique = len({b["event_id"] for _, _, b in events})
        wait_until(lambda: mongo_db["events"].count_documents({}) >= unique, 60, "second part stored")
        wait_until(lambda: live.snapshot(time.time())["pop"]["all"] == expected_pop(events), 60, "rebuilt")
        assert thread.is_alive(), result
    assert result == {"code": 0}
    assert live.guard([]).generation is not None
    rebuilds = REGISTRY.get_sample_value("streamrec_consumer_redis_rebuilds_total") or 0.0
    assert first_rebuilds == before + 1  # the fresh Redis at start
    assert rebuilds == first_rebuilds + 1  # and the flushed one
    assert "event=redis_rebuilt reason=generation_missing" in caplog.text
    assert_redis_equals_rebuild(settings)


def test_max_source_offsets_mongo_and_twin_agree(settings: Settings, mongo_db) -> None:
    from storage.event_store_memory import InMemoryEventStore

    docs: list[dict[str, Any]] = [
        {"_id": "a", "user_id": "u", "src": {"topic": "ev", "partition": 0, "offset": 7}},
        {"_id": "b", "user_id": "u", "src": {"topic": "ev", "partition": 0, "offset": 3}},
        {"_id": "c", "user_id": "u", "src": {"topic": "ev", "partition": 2, "offset": 11}},
        {"_id": "d", "user_id": "u"},  # stored without a source (an import): not an offset
    ]
    mongo = MongoEventStore.from_settings(settings.mongo)
    twin = InMemoryEventStore()
    try:
        for store in (mongo, twin):
            store.insert_events([dict(d) for d in docs])
        assert mongo.max_source_offsets() == twin.max_source_offsets() == {("ev", 0): 7, ("ev", 2): 11}
    finally:
        mongo.close()
