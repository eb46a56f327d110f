"""Two serving replicas on real Redis and MongoDB: an item made unavailable through the consumer's
write path leaves every answer (cached or not) and an erasure taken by one replica reaches the other,
each within 2 seconds."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from fastapi.testclient import TestClient

from consumer.plans import plan_item_updates
from core.events import ItemUpdate
from core.keys import Keys
from core.settings import Settings
from serving.app import create_app
from serving.wiring import open_adapters
from storage.impressions import InMemoryImpressionStore
from storage.model_registry_mongo import open_model_registry
from storage.realtime_state import RedisRealtimeState
from tests.integration.test_serving_api import AUTH, with_keys
from tests.unit.test_serving_consistency import ids, wait_until
from tests.unit.test_serving_helpers import CATEGORIES, PER_CATEGORY, model_files, tiny_loader

LIMIT_S = 2.0


def seconds_until(check: Callable[[], bool], timeout_s: float = 10.0) -> float:
    # Real servers and a real consumer: a longer default wait than the in-process twins need.
    return wait_until(check, timeout_s)


@contextmanager
def replicas(settings: Settings, n: int) -> Iterator[list[TestClient]]:
    """``n`` serving apps, each with its own Redis/MongoDB clients, on one published model."""
    registry = open_model_registry(settings)
    try:
        registry.promote(registry.publish(model_files(), {"metrics": {"ndcg@10": 0.5}}), "replica test")
    finally:
        registry.close()
    with ExitStack() as stack:
        clients = []
        for _ in range(n):
            app = create_app(settings, open_adapters(settings, loader=tiny_loader))
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            seconds_until(lambda app=app: app.state.holder.current is not None, 30)
            clients.append(client)
        yield clients


def apply_item_updates(state: RedisRealtimeState, *updates: ItemUpdate) -> None:
    """What the consumer does with items-topic records (minus Kafka)."""
    current = state.item_categories([u.item_id for u in updates])
    state.apply(plan_item_updates(state.keys, updates, current), {})


def test_unavailable_item_leaves_cached_and_uncached_answers_on_every_replica(
    settings: Settings, redis_client: Any
) -> None:
    settings = with_keys(settings, cache_ttl_s=60)
    state = RedisRealtimeState.from_settings(settings.redis)
    apply_item_updates(
        state,
        *(
            ItemUpdate(item_id=f"{c}-{j}", category=c, available=True)
            for c in CATEGORIES
            for j in range(PER_CATEGORY)
        ),
    )
    keys = Keys(settings.redis.key_prefix)
    with replicas(settings, 2) as (one, two):
        first = one.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
        assert first["items"][0]["reason"]["kind"] == "personalized" and not first["degraded"]
        seconds_until(lambda: redis_client.exists(keys.recs_cache("alice")) == 1)
        hits = one.app.state.metrics.cache_hits  # type: ignore[attr-defined]
        before = hits._value.get()
        assert ids(one.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()) == ids(
            first
        )
        assert hits._value.get() == before + 1  # the cache is warm
        gone, anchor = ids(first)[0], ids(first)[1]
        for client in (one, two):
            assert gone in ids(
                client.get(f"/v1/items/{anchor}/similar", params={"k": 9}, headers=AUTH).json()
            )
            assert gone in ids(client.get("/v1/popular", params={"k": 50}, headers=AUTH).json())

        apply_item_updates(state, ItemUpdate(item_id=gone, available=False))

        def gone_everywhere() -> bool:
            for client in (one, two):
                recs = client.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
                sim = client.get(f"/v1/items/{anchor}/similar", params={"k": 9}, headers=AUTH).json()
                pop = client.get("/v1/popular", params={"k": 50}, headers=AUTH).json()
                if any(gone in ids(body) for body in (recs, sim, pop)) or len(recs["items"]) != 3:
                    return False
            return True

        took = seconds_until(gone_everywhere)
        print(f"unavailable item gone from every answer on both replicas after {took:.2f}s")
        assert took < LIMIT_S


def test_erasure_taken_by_one_replica_reaches_the_other(
    settings: Settings, redis_client: Any, mongo_db: Any
) -> None:
    settings = with_keys(settings, cache_ttl_s=60)
    keys = Keys(settings.redis.key_prefix)
    with replicas(settings, 2) as (taker, other):
        before = other.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
        assert before["items"][0]["reason"]["kind"] == "personalized"
        seconds_until(lambda: redis_client.exists(keys.recs_cache("alice")) == 1)

        resp = taker.delete("/v1/users/alice", headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["deleted"]["cached_results"] == 1
        assert redis_client.exists(*keys.user_keys("alice")) == 0

        def unknown_on_other() -> bool:
            body = other.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
            return all(i["reason"]["kind"] == "popular" for i in body["items"])

        took = seconds_until(unknown_on_other)
        print(f"erasure reached the other replica after {took:.2f}s")
        assert took < LIMIT_S
        # It stays erased there: the next answers are not personalised either, cached or not.
        for _ in range(3):
            body = other.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
            assert {i["reason"]["kind"] for i in body["items"]} == {"popular"}
        # A replica started after the erasure knows it too (from the stream and from MongoDB).
        with replicas(settings, 1) as (late,):
            body = late.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
            assert {i["reason"]["kind"] for i in body["items"]} == {"popular"}


def test_erasure_deletes_exactly_the_users_keys_without_scanning(
    settings: Settings, redis_client: Any
) -> None:
    """Keys are derived from the layout: users whose ids extend or glob-match the erased one keep
    their state (the old SCAN over ``user:{uid}:*`` also matched ``user:eve:x:recent``)."""
    import asyncio

    from storage.realtime_reader import RedisRealtimeReader

    keys = Keys(settings.redis.key_prefix)
    users = ("eve", "eve:x", "eve*", "ev?")
    for user in users:
        redis_client.zadd(keys.recent(user), {"m": 1})
        redis_client.sadd(keys.seen(user), "i1")
        redis_client.set(keys.marker(user), 2)
        redis_client.hset(keys.recs_cache(user), "k10", "1:0:[]")

    async def erase() -> Any:
        reader = RedisRealtimeReader(settings.redis)
        try:
            erased = await reader.erase_user("eve")
            announced = await reader.sync("0")
        finally:
            await reader.close()
        return erased, announced

    erased, announced = asyncio.run(erase())
    assert (erased.state_keys, erased.cached_results) == (3, 1)
    assert redis_client.exists(*keys.user_keys("eve")) == 0
    for user in users[1:]:
        assert redis_client.exists(*keys.user_keys(user)) == 4, user
    assert announced.erasures == ("eve",)


def test_put_item_through_kafka_and_the_consumer_reaches_a_warm_cache(
    settings: Settings, redis_client: Any
) -> None:
    """The product path end to end: PUT /v1/items -> items topic -> consumer -> Redis -> every answer."""
    import threading

    from consumer.runner import ConsumerRunner
    from consumer.wiring import open_kafka
    from storage.event_store import MongoEventStore

    settings = with_keys(settings, cache_ttl_s=60)
    state = RedisRealtimeState.from_settings(settings.redis)
    apply_item_updates(
        state,
        *(
            ItemUpdate(item_id=f"{c}-{j}", category=c, available=True)
            for c in CATEGORIES
            for j in range(PER_CATEGORY)
        ),
    )
    keys = Keys(settings.redis.key_prefix)
    store = MongoEventStore.from_settings(settings.mongo)
    runner = ConsumerRunner(
        settings, store, state, open_kafka(settings), impressions=InMemoryImpressionStore()
    )
    thread = threading.Thread(target=runner.run, name="consumer", daemon=True)
    thread.start()
    try:
        with replicas(settings, 2) as (one, two):
            first = one.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json()
            seconds_until(lambda: redis_client.exists(keys.recs_cache("alice")) == 1)
            gone = ids(first)[0]
            resp = one.put(f"/v1/items/{gone}", json={"available": False}, headers=AUTH)
            assert resp.status_code == 202, resp.text
            # Kafka and the consumer's group join take their time; the 2 s start once it is applied.
            seconds_until(lambda: redis_client.sismember(keys.unavailable(), gone) == 1, 60)

            def gone_everywhere() -> bool:
                return all(
                    gone
                    not in ids(c.get("/v1/users/alice/recommendations", params={"k": 3}, headers=AUTH).json())
                    and gone not in ids(c.get("/v1/popular", params={"k": 50}, headers=AUTH).json())
                    for c in (one, two)
                )

            took = seconds_until(gone_everywhere)
            print(f"item gone from both replicas {took:.2f}s after the consumer applied the update")
            assert took < LIMIT_S
    finally:
        runner.request_stop()
        thread.join(30)
        store.close()
