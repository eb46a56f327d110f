"""Ingest and serving against a three-primary Redis Cluster of real ``redis-server`` processes.

The cluster comes from ``tooling.devstack.redis_cluster`` (``cluster-enabled yes``, one
``cluster-config-file`` per node, ``redis-cli --cluster create ... --cluster-replicas 0``, then
``cluster_state:ok`` on every node); Kafka and MongoDB are the harness's dev servers. The consumer
(the same runner the other consumer tests use) starts on the empty cluster, rebuilds it (no
generation marker yet), applies events of many users (spread over the three primaries) and catalog
updates with its per-slot apply; serving then answers from the cluster with its one-round-trip
per-user read, caches the result, serves popularity by category and erases a user.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from redis.cluster import RedisCluster

from core.keys import Keys
from core.settings import Settings
from storage.kafka import flush_or_raise, make_producer
from storage.realtime_state import InMemoryRealtimeState, RedisRealtimeState
from tests.integration.test_consumer_e2e import running_consumer, wait_until
from tests.integration.test_consumer_resilience import assert_redis_equals_rebuild
from tests.integration.test_redis_effects import _guard_calls
from tests.integration.test_serving_api import AUTH, live_app, with_keys
from tooling.devstack.redis_cluster import (
    RedisClusterProcesses,
    free_cluster_ports,
    start_redis_cluster,
    stop_redis_cluster,
)

USERS = [f"shopper-{n}" for n in range(24)]


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    cluster = start_redis_cluster(tmp_path_factory.mktemp("redis-cluster"), free_cluster_ports(3))
    try:
        yield cluster
    finally:
        stop_redis_cluster(cluster)


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster: RedisClusterProcesses) -> Settings:
    redis = settings.redis.model_copy(update={"url": SecretStr(redis_cluster.url), "cluster": True})
    return with_keys(settings.model_copy(update={"redis": redis}))


def body(eid: str, user: str, item: str, etype: str = "view") -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        {"event_id": eid, "event_type": etype, "user_id": user, "item_id": item, "timestamp": now}
    )


def test_cluster_has_three_primaries_with_every_slot(redis_cluster: RedisClusterProcesses) -> None:
    client = RedisCluster.from_url(redis_cluster.url)
    try:
        primaries = client.get_primaries()
        assert len(primaries) == 3
        assert int(client.cluster_info()["cluster_slots_ok"]) == 16384
    finally:
        client.close()


def test_guard_contract_on_a_cluster_matches_the_twin(cluster_settings: Settings) -> None:
    """The guarded apply, the rebuild's steps, the lock, erasure and clearing, as on one server."""
    live = _guard_calls(RedisRealtimeState.from_settings(cluster_settings.redis))
    assert live == _guard_calls(InMemoryRealtimeState(cluster_settings.redis.key_prefix))


def test_ingest_and_serving_on_a_redis_cluster(
    cluster_settings: Settings, kafka_topics: Any, mongo_db: Any
) -> None:
    settings = cluster_settings
    keys = Keys(settings.redis.key_prefix)
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=2)
    kafka_topics.create(topics.items, partitions=1)
    producer = make_producer(settings.kafka)
    # eve's history: three games viewed, one bought; everyone else views a few items.
    sent = [(b"eve", body(f"eve-{n}", "eve", f"games-{n}")) for n in (1, 2, 3)]
    sent.append((b"eve", body("eve-4", "eve", "games-4", "purchase")))
    sent += [(u.encode(), body(f"{u}-{n}", u, f"books-{n}")) for u in USERS for n in range(3)]
    updates = [{"item_id": f"games-{n}", "title": f"Game {n}", "category": "games"} for n in range(1, 6)]
    with running_consumer(settings) as (_runner, thread, result):
        for key, value in sent:
            producer.produce(topics.events, key=key, value=value)
        for update in updates:
            producer.produce(topics.items, key=update["item_id"].encode(), value=orjson.dumps(update))
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) == len(sent), 60, "events stored")
        state = RedisRealtimeState.from_settings(settings.redis)
        assert state.cluster

        def all_applied() -> bool:
            ends = {(topics.events, 0): -1, (topics.events, 1): -1}
            for doc in mongo_db["events"].find({}, {"src": 1}):
                tp = (doc["src"]["topic"], doc["src"]["partition"])
                ends[tp] = max(ends[tp], doc["src"]["offset"])
            return state.applied_offsets(ends) == ends and state.item_categories(["games-5"]) == {
                "games-5": "games"
            }

        wait_until(all_applied, 60, "effects applied")
        assert thread.is_alive(), result
    assert result == {"code": 0}

    # The consumer rebuilt the empty cluster first (no generation marker), then applied every event
    # once: the live state equals one rebuilt from MongoDB into another prefix.
    assert_redis_equals_rebuild(settings)
    client = RedisCluster.from_url(settings.redis.url.get_secret_value(), decode_responses=True)
    try:
        assert client.get(keys.generation())
        nodes = {client.get_node_from_key(keys.recent(u)).name for u in USERS}
        assert len(nodes) == 3, "users should spread over all three primaries"
        assert client.zcard(keys.recent("eve")) == 4 and client.smembers(keys.purchased("eve")) == {"games-4"}
        assert client.get(keys.marker("shopper-0")) is not None

        with live_app(settings) as api:
            recs = api.get("/v1/users/eve/recommendations", params={"k": 5}, headers=AUTH).json()
            assert recs["degraded"] is False
            shown = [i["item_id"] for i in recs["items"]]
            assert "games-4" not in shown  # bought: the per-user read saw the consumer's writes
            assert any(i["reason"]["kind"] in ("session", "similar_to") for i in recs["items"])
            deadline = time.monotonic() + 5
            while not client.exists(keys.recs_cache("eve")):
                assert time.monotonic() < deadline, "result was never cached"
                time.sleep(0.05)
            again = api.get("/v1/users/eve/recommendations", params={"k": 5}, headers=AUTH).json()
            assert [i["item_id"] for i in again["items"]] == shown

            popular = api.get("/v1/popular", params={"k": 3, "category": "games"}, headers=AUTH).json()
            assert popular["items"] and all(i["item_id"].startswith("games-") for i in popular["items"])

            erased = api.delete("/v1/users/eve", headers=AUTH)
            assert erased.status_code == 200, erased.text
            assert erased.json()["deleted"]["realtime_keys"] == 4
            assert erased.json()["deleted"]["cached_results"] == 1
            assert client.exists(*keys.user_keys("eve")) == 0
            assert client.xlen(keys.erasures()) == 1
    finally:
        client.close()
