"""Crashes, SIGTERM and a Redis outage: nothing lost, nothing applied twice, Redis equals a rebuild."""

from __future__ import annotations

import functools
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import TopicPartition

from consumer.rebuild import diff_snapshots, rebuild_cache
from core.event_weights import event_weight
from core.settings import EventWeights, Settings
from storage.event_store import MongoEventStore
from storage.kafka import flush_or_raise, make_consumer, make_producer
from storage.realtime_state import RedisRealtimeState
from tests.integration.test_consumer_e2e import running_consumer, wait_until

REPO = Path(__file__).resolve().parents[2]
TYPES = ["view", "view", "click", "add_to_cart", "favorite", "purchase", "rate"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def streamrec_bin() -> str:
    for candidate in (REPO / ".venv" / "bin" / "streamrec", Path(sys.executable).parent / "streamrec"):
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("streamrec console script not found; run `make install`")


def consumer_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    topics = settings.kafka.topics
    env.update(
        {
            "STREAMREC_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
            "STREAMREC_KAFKA__TOPICS__EVENTS": topics.events,
            "STREAMREC_KAFKA__TOPICS__ITEMS": topics.items,
            "STREAMREC_KAFKA__TOPICS__DEAD_LETTER": topics.dead_letter,
            "STREAMREC_KAFKA__TOPICS__IMPRESSIONS": topics.impressions,
            "STREAMREC_KAFKA__GROUP_ID": settings.kafka.group_id,
            "STREAMREC_MONGO__URI": settings.mongo.uri.get_secret_value(),
            "STREAMREC_MONGO__DATABASE": settings.mongo.database,
            "STREAMREC_REDIS__URL": settings.redis.url.get_secret_value(),
            "STREAMREC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "STREAMREC_CONSUMER__METRICS_PORT": "0",
            "STREAMREC_CONSUMER__BATCH_SIZE": "50",
        }
    )
    return env


def make_events(n: int, seed: int) -> list[tuple[bytes, bytes, dict[str, Any]]]:
    """(key, value, body) with some genuine duplicates (same event id sent again later)."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(n):
        body: dict[str, Any] = {
            "event_id": f"e{i}",
            "event_type": rng.choice(TYPES),
            "user_id": f"u{rng.randrange(40)}",
            "item_id": f"i{rng.randrange(60)}",
            "timestamp": now_ms - rng.randrange(0, 3 * 86400 * 1000),
        }
        if body["event_type"] == "rate":
            body["value"] = rng.choice([1, 3.5, 5])
        out.append((body["user_id"].encode(), orjson.dumps(body), body))
        if i % 50 == 49:
            dup = out[rng.randrange(len(out))]
            out.append(dup)
    return out


def expected_pop(events: list[tuple[bytes, bytes, dict[str, Any]]]) -> dict[str, float]:
    seen: set[str] = set()
    pop: dict[str, float] = {}
    for _, _, body in events:
        if body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        w = event_weight(body["event_type"], body.get("value"), EventWeights())
        pop[body["item_id"]] = round(pop.get(body["item_id"], 0.0) + w, 6)
    return pop


def assert_redis_equals_rebuild(settings: Settings) -> None:
    now_s = time.time()
    live = RedisRealtimeState.from_settings(settings.redis)
    store = MongoEventStore.from_settings(settings.mongo)
    rebuilt = RedisRealtimeState.from_settings(settings.redis, prefix=settings.redis.key_prefix + "rb:")
    try:
        rebuild_cache(settings, store, rebuilt, now_s=now_s)
    finally:
        store.close()
    assert diff_snapshots(live.snapshot(now_s), rebuilt.snapshot(now_s)) == []


def test_sigkill_twice_then_sigterm_loses_nothing_and_applies_once(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=2)
    kafka_topics.create(topics.items, partitions=1)
    events = make_events(2400, seed=3)
    unique = len({b["event_id"] for _, _, b in events})
    ends: dict[int, int] = {}

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    def produce_slowly() -> None:
        producer = make_producer(settings.kafka)
        for start in range(0, len(events), 120):
            for key, value, _ in events[start : start + 120]:
                producer.produce(topics.events, key=key, value=value, on_delivery=delivered)
            producer.flush(10)
            time.sleep(0.25)
        flush_or_raise(producer)

    feeder = threading.Thread(target=produce_slowly, daemon=True)
    feeder.start()
    env = consumer_env(settings)

    def count() -> int:
        return int(mongo_db["events"].count_documents({}))

    for kill_at in (unique // 4, unique // 2):
        proc = subprocess.Popen([streamrec_bin(), "consume"], env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        try:
            wait_until(functools.partial(lambda k: count() >= k, kill_at), 90, f"{kill_at} events stored")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
    feeder.join(60)
    proc = subprocess.Popen([streamrec_bin(), "consume"], env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: count() >= unique, 90, "every event stored")
        live = RedisRealtimeState.from_settings(settings.redis)
        wait_until(
            lambda: all(
                live.applied_offsets([(topics.events, p)])[(topics.events, p)] == ends[p] - 1 for p in ends
            ),
            60,
            "every record applied",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0  # SIGTERM: finish the batch, commit, close, exit 0

    assert count() == unique  # no loss; _id = event_id makes duplicates impossible
    live = RedisRealtimeState.from_settings(settings.redis)
    assert live.snapshot(time.time())["pop"]["all"] == expected_pop(events)  # no effect applied twice
    assert_redis_equals_rebuild(settings)

    checker = make_consumer(settings.kafka)  # same group: read its committed offsets, never joins
    try:
        committed = checker.committed([TopicPartition(topics.events, p) for p in ends], timeout=10)
    finally:
        checker.close()
    assert {tp.partition: tp.offset for tp in committed} == ends


@pytest.fixture
def own_redis(tmp_path: Path):
    """A redis-server of this test's own (append-only file, so a restart keeps the data)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    port = free_port()
    cmd = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
    cmd += ["--appendfsync", "always", "--dir", str(tmp_path)]
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        client = redis.Redis(port=port, socket_timeout=1)
        wait_until(lambda: _pings(client), 20, "redis-server up")

    def stop() -> None:
        procs[-1].send_signal(signal.SIGTERM)
        procs[-1].wait(20)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_redis_outage_backs_off_and_resumes_without_loss(
    settings: Settings, own_redis, kafka_topics, mongo_db, caplog
) -> None:
    url, start_redis, stop_redis = own_redis
    from pydantic import SecretStr

    settings = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": SecretStr(url)}),
            "consumer": settings.consumer.model_copy(
                update={"backoff_initial_s": 0.1, "backoff_max_s": 0.8, "batch_size": 50}
            ),
        }
    )
    caplog.set_level(logging.INFO)
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=1)
    events = make_events(300, seed=11)
    first, second = events[:150], events[150:]
    producer = make_producer(settings.kafka)
    unique_first = len({b["event_id"] for _, _, b in first})
    with running_consumer(settings) as (_runner, thread, result):
        for key, value, _ in first:
            producer.produce(topics.events, key=key, value=value)
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= unique_first, 60, "first half stored")
        stop_redis()
        for key, value, _ in second:
            producer.produce(topics.events, key=key, value=value)
        flush_or_raise(producer)
        # Redis down: the consumer stores ahead in MongoDB instead of retrying one batch.
        wait_until(lambda: "event=redis_unavailable" in caplog.text, 30, "store-ahead log line")
        time.sleep(2.0)  # several probes while Redis is down
        assert thread.is_alive(), result
        start_redis()
        unique = len({b["event_id"] for _, _, b in events})
        live = RedisRealtimeState.from_settings(settings.redis)
        wait_until(lambda: mongo_db["events"].count_documents({}) >= unique, 60, "second half stored")
        wait_until(
            lambda: live.applied_offsets([(topics.events, 0)])[(topics.events, 0)] == len(events) - 1,
            60,
            "every record applied after Redis came back",
        )
    assert result == {"code": 0}
    assert "event=redis_recovered action=reread" in caplog.text
    assert RedisRealtimeState.from_settings(settings.redis).snapshot(time.time())["pop"][
        "all"
    ] == expected_pop(events)
    assert_redis_equals_rebuild(settings)
