"""Trending, new arrivals and the batch export on real Kafka, MongoDB and Redis (the dev stack)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from cli.export_run import export_settings, run_export
from consumer.rebuild import rebuild_cache
from core.settings import Settings, TrendingSettings
from serving.app import create_app
from serving.wiring import open_adapters
from storage.event_store import MongoEventStore
from storage.kafka import flush_or_raise, make_producer
from storage.model_registry_mongo import open_model_registry
from storage.realtime_state import RedisRealtimeState
from tests.integration.test_consumer_e2e import running_consumer, wait_until
from tests.unit.test_serving_helpers import category_of, model_files, tiny_loader


def click(n: int, user: str, item: str, age_s: float = 5.0) -> bytes:
    ts = int((time.time() - age_s) * 1000)
    body = {"event_id": f"e{n}", "event_type": "click", "user_id": user, "item_id": item, "timestamp": ts}
    return orjson.dumps(body)


def publish_model(settings: Settings) -> None:
    registry = open_model_registry(settings)
    try:
        registry.promote(registry.publish(model_files(), {"metrics": {}}), "integration test")
    finally:
        registry.close()


def test_new_arrivals_and_trending_through_kafka_and_rebuild(settings: Settings, kafka_topics: Any) -> None:
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=1)
    kafka_topics.create(topics.items, partitions=1)
    producer = make_producer(settings.kafka)
    trending = TrendingSettings(min_count=2.0)
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"trending": trending})}
    )
    before_ms = int(time.time() * 1000)
    with running_consumer(settings) as (_runner, _thread, result):
        for item in ["books-1", "books-2", "fresh-1"]:
            producer.produce(
                topics.items, key=item.encode(), value=orjson.dumps({"item_id": item, "category": "books"})
            )
            flush_or_raise(producer)
            time.sleep(0.05)  # distinct Kafka timestamps: newest last
        producer.produce(topics.items, key=b"gone-1", value=b'{"item_id": "gone-1", "available": false}')
        for n in range(6):
            producer.produce(topics.events, key=b"u", value=click(n, f"u{n}", "books-2"))
        producer.produce(topics.events, key=b"u", value=click(10, "u9", "books-1"))
        flush_or_raise(producer)
        state = RedisRealtimeState.from_settings(settings.redis)
        wait_until(lambda: state.applied_offsets([(topics.events, 0)])[(topics.events, 0)] >= 6, 30, "events")
        wait_until(lambda: state.applied_offsets([(topics.items, 0)])[(topics.items, 0)] >= 3, 30, "items")
        # A later update of an item does not make it new again.
        producer.produce(topics.items, key=b"books-1", value=b'{"item_id": "books-1", "price": 3.5}')
        flush_or_raise(producer)
        wait_until(lambda: state.applied_offsets([(topics.items, 0)])[(topics.items, 0)] >= 4, 30, "update")
        assert "error" not in result

    publish_model(settings)
    app = create_app(settings, open_adapters(settings, loader=tiny_loader))
    with TestClient(app) as client:
        wait_until(lambda: app.state.holder.current is not None, 30, "model")
        new = client.get("/v1/new", params={"k": 10}).json()
        ids = [i["item_id"] for i in new["items"]]
        assert ids == ["fresh-1", "books-2", "books-1"] and new["degraded"] is False  # gone-1 unavailable
        added = datetime.fromisoformat(new["items"][2]["reason"]["added_at"])
        assert before_ms - 1000 <= added.timestamp() * 1000 <= time.time() * 1000
        mine = client.get("/v1/new", params={"k": 3, "user_id": "alice", "category": "books"}).json()
        assert mine["personalized"] is True
        assert mine["items"][0]["reason"]["basis"] == "recency" and "note" in mine["items"][0]["reason"]
        assert {i["reason"]["basis"] for i in mine["items"][1:]} == {"embedding"}
        trending = client.get("/v1/trending", params={"category": "books"}).json()
        # books-1 has one click: under the minimum count (2); books-2's six are all recent.
        assert [i["item_id"] for i in trending["items"]] == ["books-2"]
        reason = trending["items"][0]["reason"]
        assert reason["kind"] == "trending" and reason["short_per_hour"] > 0 and reason["growth"] > 0

    store = MongoEventStore.from_settings(settings.mongo)
    try:
        rebuilt = RedisRealtimeState.from_settings(settings.redis, prefix=settings.redis.key_prefix + "rb:")
        rebuild_cache(settings, store, rebuilt, now_s=time.time())
        assert rebuilt.snapshot(time.time())["added"] == state.snapshot(time.time())["added"]
        assert set(rebuilt.snapshot(time.time())["added"]) == {"books-1", "books-2", "fresh-1", "gone-1"}
    finally:
        store.close()


def test_export_against_the_real_servers_resumes(settings: Settings, tmp_path: Path) -> None:
    publish_model(settings)
    store = MongoEventStore.from_settings(settings.mongo)
    try:
        ts = datetime.now(UTC)
        docs = [
            {"_id": f"x{n}", "user_id": u, "item_id": "tools-1", "event_type": "click", "ts": ts}
            for n, u in enumerate(["alice", "bob", "carol", "bob"])
        ]
        store.insert_events(docs)
    finally:
        store.close()
    out = tmp_path / "recs.jsonl"

    def export(users: list[str] | None) -> Any:
        local = export_settings(settings)
        adapters = open_adapters(local, loader=tiny_loader)
        return asyncio.run(run_export(settings, out, k=4, users=users, adapters=adapters, concurrency=4))

    stats = export(None)
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert sorted(x["user_id"] for x in lines) == ["alice", "bob", "carol"] and stats.exported == 3
    alice = next(x for x in lines if x["user_id"] == "alice")
    assert len(alice["items"]) == 4 and {category_of(i["item_id"]) for i in alice["items"]} == {"books"}
    out.write_bytes(out.read_bytes()[:-7])  # an interrupted run
    stats = export(["alice", "bob", "carol", "dave"])
    assert stats.exported == 2 and stats.already_done == 2 and stats.repaired_bytes > 0
    assert sorted(orjson.loads(x)["user_id"] for x in out.read_bytes().splitlines()) == [
        "alice",
        "bob",
        "carol",
        "dave",
    ]


def test_export_command_with_a_trained_model(settings: Settings, monkeypatch: Any, tmp_path: Path) -> None:
    """The command as an operator runs it: Settings from the environment, a model retraining trained."""
    import importlib

    from typer.testing import CliRunner

    from cli.app import app
    from tests.integration.test_retrain_once import _events

    values = {
        "STREAMREC_MONGO__URI": settings.mongo.uri.get_secret_value(),
        "STREAMREC_MONGO__DATABASE": settings.mongo.database,
        "STREAMREC_REDIS__URL": settings.redis.url.get_secret_value(),
        "STREAMREC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "STREAMREC_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "STREAMREC_MODEL__ARTIFACT_CACHE_DIR": str(settings.model.artifact_cache_dir),
        "STREAMREC_MODEL__FACTORS": "32",
        "STREAMREC_RETRAIN__METRICS_PORT": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    store = MongoEventStore.from_settings(settings.mongo)
    try:
        store.insert_events(_events())
    finally:
        store.close()
    for module in ("cli.retrain_cmd", "cli.export_cmd"):
        importlib.import_module(module)  # registers its commands on the app
    runner = CliRunner()
    assert runner.invoke(app, ["retrain", "--once"]).exit_code == 0
    out = tmp_path / "campaign.jsonl"
    args = ["export", "recommendations", "--all", "--k", "5", "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "200 users exported" in first.output and "0 of 200 were already there" in first.output
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert len(lines) == 200 and all(len(x["items"]) == 5 and x["model_version"] == "1" for x in lines)
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 users exported" in again.output and "200 of 200" in again.output
