"""Serving against real Kafka, MongoDB and Redis: erasure, ingest to Kafka, Redis dying mid-test."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.keys import Keys
from core.settings import ServingSettings, Settings
from serving.app import create_app
from serving.wiring import open_adapters
from storage.event_store import MongoEventStore
from storage.kafka import make_consumer, wait_for_assignment
from storage.model_registry_mongo import open_model_registry
from tests.unit.test_serving_helpers import ADMIN, INGEST, READ, model_files, tiny_loader

AUTH = {"X-API-Key": ADMIN}


def with_keys(settings: Settings, **serving: Any) -> Settings:
    return settings.model_copy(
        update={
            "serving": ServingSettings(
                api_keys_read=[SecretStr(READ)],
                api_keys_ingest=[SecretStr(INGEST)],
                api_keys_admin=[SecretStr(ADMIN)],
                public_read=False,
                model_poll_s=0.2,
                **serving,
            )
        }
    )


@contextmanager
def live_app(settings: Settings) -> Iterator[TestClient]:
    registry = open_model_registry(settings)
    try:
        version = registry.publish(model_files(), {"metrics": {"ndcg@10": 0.5}})
        registry.promote(version, "integration test")
    finally:
        registry.close()
    app = create_app(settings, open_adapters(settings, loader=tiny_loader))
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while app.state.holder.current is None:
            assert time.monotonic() < deadline, f"model not loaded: {app.state.holder.last_error}"
            time.sleep(0.05)
        yield client


def seed_user(redis_client: Any, keys: Keys, user: str) -> None:
    now = int(time.time() * 1000)
    for n, item in enumerate(["games-1", "games-2", "games-3"]):
        member = orjson.dumps({"e": f"ev{n}", "i": item, "t": "click"})
        redis_client.zadd(keys.recent(user), {member: now - n})
    redis_client.sadd(keys.purchased(user), "games-4")
    redis_client.sadd(keys.seen(user), "games-1", "games-2")
    redis_client.set(keys.marker(user), 3)


def test_erasure_end_to_end(settings: Settings, redis_client: Any, mongo_db: Any) -> None:
    settings = with_keys(settings)
    keys = Keys(settings.redis.key_prefix)
    seed_user(redis_client, keys, "eve")
    store = MongoEventStore(mongo_db)
    store.insert_events(
        [
            {"_id": f"ev{n}", "event_id": f"ev{n}", "user_id": "eve", "item_id": "g1", "event_type": "click"}
            for n in range(4)
        ]
        + [{"_id": "other", "event_id": "other", "user_id": "zed", "item_id": "x", "event_type": "click"}]
    )
    # What eve was shown is hers too (what the consumer stores from the impressions topic).
    mongo_db["impressions"].insert_many(
        [{"_id": "r-eve", "user_id": "eve", "items": []}, {"_id": "r-zed", "user_id": "zed", "items": []}]
    )
    with live_app(settings) as client:
        # Her attributes, stored through the API (MongoDB's users collection), and someone else's.
        for user in ("eve", "zed"):
            put = client.put(f"/v1/users/{user}", json={"attributes": {"segment": "b2b"}}, headers=AUTH)
            assert put.status_code == 200, put.text
        recs = client.get("/v1/users/eve/recommendations", params={"k": 5}, headers=AUTH).json()
        assert recs["degraded"] is False
        assert "games-4" not in [i["item_id"] for i in recs["items"]]  # purchased
        assert any(i["reason"]["kind"] in ("session", "similar_to") for i in recs["items"])
        deadline = time.monotonic() + 5
        while not redis_client.exists(keys.recs_cache("eve")):
            assert time.monotonic() < deadline, "result was never cached"
            time.sleep(0.05)

        resp = client.delete("/v1/users/eve", headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["deleted"] == {
            "events": 4,
            "impressions": 1,
            "attributes": 1,
            "realtime_keys": 4,
            "cached_results": 1,
            "embeddings_suppressed": 0,
        }
        assert list(redis_client.scan_iter(match=f"{settings.redis.key_prefix}*eve*")) == []
        assert mongo_db["events"].count_documents({"user_id": "eve"}) == 0
        assert mongo_db["events"].count_documents({"user_id": "zed"}) == 1
        assert [d["_id"] for d in mongo_db["impressions"].find()] == ["r-zed"]
        assert [d["_id"] for d in mongo_db["users"].find()] == ["zed"]
        assert client.get("/v1/users/eve", headers=AUTH).status_code == 404
        assert "eve" in store.erased_users()
        after = client.get("/v1/users/eve/recommendations", params={"k": 3}, headers=AUTH).json()
        assert all(i["reason"]["kind"] == "popular" for i in after["items"])

        # alice is known to the model: her embedding must stop being used once erased.
        assert client.get("/v1/users/alice/recommendations", headers=AUTH).json()["items"][0]["reason"] == {
            "kind": "personalized"
        }
        body = client.delete("/v1/users/alice", headers=AUTH).json()
        assert body["deleted"]["embeddings_suppressed"] == 1
        again = client.get("/v1/users/alice/recommendations", headers=AUTH).json()
        assert {i["reason"]["kind"] for i in again["items"]} == {"popular"}


def test_posted_events_land_in_kafka(settings: Settings, kafka_topics: Any) -> None:
    settings = with_keys(settings)
    topic = kafka_topics.create(settings.kafka.topics.events, partitions=1)
    now = int(time.time() * 1000)
    events = [
        {"event_id": f"k{n}", "event_type": "view", "user_id": f"u{n % 2}", "item_id": "i1", "timestamp": now}
        for n in range(3)
    ]
    with live_app(settings) as client:
        resp = client.post("/v1/events", json=[*events, {"bad": 1}], headers={"X-API-Key": INGEST})
        assert resp.status_code == 202, resp.text
        assert resp.json()["accepted"] == 3 and len(resp.json()["errors"]) == 1
    consumer = make_consumer(settings.kafka, group_id=f"{settings.kafka.group_id}-read")
    try:
        consumer.subscribe([topic])
        wait_for_assignment(consumer)
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += [m for m in consumer.consume(10, 0.5) if m.error() is None]
    finally:
        consumer.close()
    assert sorted(orjson.loads(m.value())["event_id"] for m in got) == ["k0", "k1", "k2"]
    assert {m.key() for m in got} == {b"u0", b"u1"}


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Any]:
    from tooling.devstack.servers import start_server, stop_server

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server("redis", tmp_path / "redis", port)
    try:
        yield server
    finally:
        stop_server(server)


def test_redis_stopped_mid_test_never_5xx(settings: Settings, own_redis: Any) -> None:
    from tooling.devstack.servers import stop_server

    settings = with_keys(settings)
    redis = settings.redis.model_copy(update={"url": SecretStr(own_redis.url), "timeout_s": 0.5})
    settings = settings.model_copy(update={"redis": redis})
    with live_app(settings) as client:
        first = client.get("/v1/users/alice/recommendations", params={"k": 5}, headers=AUTH)
        assert first.status_code == 200 and first.json()["degraded"] is False
        stop_server(own_redis)
        statuses, degraded = [], []
        for user in ["alice", "bob", "nobody"] * 5:
            resp = client.get(f"/v1/users/{user}/recommendations", params={"k": 5}, headers=AUTH)
            statuses.append(resp.status_code)
            degraded.append(resp.json().get("degraded"))
            assert len(resp.json()["items"]) == 5
        for path in ("/v1/popular", "/v1/items/books-1/similar", "/v1/model", "/healthz"):
            statuses.append(client.get(path, headers=AUTH).status_code)
        assert set(statuses) == {200}
        assert all(degraded)
        ready = client.get("/readyz")  # degraded answers are answers: still in service
        assert ready.status_code == 200 and ready.json()["mode"] == "degraded"
        assert ready.json()["checks"]["redis"].startswith("unreachable")
