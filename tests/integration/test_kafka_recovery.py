"""Kafka clients recover by themselves: the broker restarts (losing all its state) under the API and
under the consumer, and both go on without a restart of their own.

Each test runs a private dev broker (Tansu keeps everything in memory, so a restart loses topics,
groups and producer ids: the case that wedged idempotent producers for good).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.settings import Settings
from serving.app import create_app
from serving.wiring import open_adapters
from storage.kafka import flush_or_raise, make_consumer, make_producer
from tests.integration.test_consumer_e2e import read_topic, wait_until
from tests.integration.test_consumer_resilience import consumer_env, streamrec_bin
from tests.integration.test_serving_api import with_keys
from tests.unit.test_serving_helpers import INGEST, tiny_loader
from tooling.devstack.probes import free_port, port_is_free
from tooling.devstack.servers import ServerProcess, start_server, stop_server


class Broker:
    """A private dev broker that can be restarted on the same port."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.server: ServerProcess | None = start_server("kafka", base, self.port)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            # Tansu takes ~5 s to honour SIGTERM; a crash (SIGKILL after 0.5 s) is the harder case anyway.
            stop_server(self.server, timeout_s=0.5)
            self.server = None

    def start(self) -> None:
        if self.server is None:
            # The killed broker's listening socket can take a moment to be released.
            deadline = time.monotonic() + 15
            while not port_is_free(self.port) and time.monotonic() < deadline:
                time.sleep(0.1)
            self.server = start_server("kafka", self.base, self.port)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def private_broker(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(tmp_path / "broker")
    try:
        yield broker
    finally:
        broker.stop()


def on_broker(settings: Settings, broker: Broker) -> Settings:
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bootstrap": broker.url})})


def event(eid: str, user: str = "pu1", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": eid,
        "event_type": "click",
        "user_id": user,
        "item_id": "books-1",
        "timestamp": int(time.time() * 1000),
        **extra,
    }


def test_api_ingest_recovers_after_the_broker_restarts(settings: Settings, tmp_path: Path) -> None:
    auth = {"X-API-Key": INGEST}
    with private_broker(tmp_path) as broker:
        live = with_keys(on_broker(settings, broker), ingest_timeout_s=5.0)
        # No model is published: a fresh install fed only over HTTP must be ready and accept events.
        app = create_app(live, open_adapters(live, loader=tiny_loader))
        with TestClient(app, raise_server_exceptions=False) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["mode"] == "popularity", ready.text
            assert client.post("/v1/events", json=[event("a1")], headers=auth).status_code == 202

            broker.stop()
            down = client.post("/v1/events", json=[event("a2")], headers=auth)
            assert down.status_code == 503 and down.json()["error"]["code"] == "kafka_unavailable"
            ready = client.get("/readyz")  # reads stay in service; the ingest path is reported down
            assert ready.status_code == 200 and ready.json()["checks"]["ingest"].startswith("down")

            broker.start()
            started = time.monotonic()
            resp = client.post("/v1/events", json=[event("a2"), event("a3")], headers=auth)
            recovery_s = time.monotonic() - started
            assert resp.status_code == 202, resp.text
            assert recovery_s < 8.0
            assert client.get("/readyz").json()["checks"]["ingest"] == "ok"
            metrics = client.get("/metrics").text
            assert "streamrec_serving_producer_rebuilds_total 1.0" in metrics
            started = time.monotonic()
            item = client.put("/v1/items/books-1", json={"available": False}, headers=auth)
            assert item.status_code == 202 and time.monotonic() - started < 2.0
            # A second restart, now with the producer warm: same story.
            broker.restart()
            assert client.post("/v1/events", json=[event("a4")], headers=auth).status_code == 202
        got = read_topic(live, live.kafka.topics.events, expected=1, timeout_s=10)
        assert [orjson.loads(m.value())["event_id"] for m in got] == ["a4"]


def consume_process(settings: Settings, log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    environment = consumer_env(settings) | {"STREAMREC_CONSUMER__BATCH_SIZE": "200", **env}
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [streamrec_bin(), "consume"], env=environment, stdout=log_file, stderr=subprocess.STDOUT
        )


def send_to(settings: Settings, partition: int, *records: tuple[bytes, bytes]) -> None:
    """A fresh producer per call: the test's own client must not be what is under test."""
    producer = make_producer(settings.kafka)
    for key, value in records:
        producer.produce(settings.kafka.topics.events, key=key, value=value, partition=partition)
    flush_or_raise(producer, timeout_s=20)


def test_consumer_recovers_after_the_broker_restarts(
    settings: Settings, tmp_path: Path, mongo_db: Any
) -> None:
    with private_broker(tmp_path) as broker:
        live = on_broker(settings, broker)
        topics = live.kafka.topics
        log_path = tmp_path / "consumer.log"
        proc = consume_process(live, log_path, STREAMREC_CONSUMER__SHUTDOWN_GRACE_S="10")
        try:
            # Partition 0 before the restart, partition 1 after: the restarted broker starts every
            # partition at offset 0 again, below the offsets Redis recorded as applied for partition 0.
            send_to(live, 0, (b"pu1", orjson.dumps(event("c1"))), (b"pu1", b"{poison"))
            wait_until(lambda: mongo_db["events"].count_documents({}) == 1, 60, "first event stored")
            assert len(read_topic(live, topics.dead_letter, expected=1, timeout_s=5)) == 1

            broker.restart()
            # A poison record first: its dead letter needs the consumer's producer, which must
            # rebuild itself instead of blocking every partition.
            send_to(live, 1, (b"pu1", b"{poison again"), (b"pu1", orjson.dumps(event("c2"))))
            send_to(live, 1, (b"pu2", orjson.dumps(event("c3", user="pu2"))))
            wait_until(lambda: mongo_db["events"].count_documents({}) == 3, 60, "events after restart")
            dead = read_topic(live, topics.dead_letter, expected=1, timeout_s=20)
            assert [m.value() for m in dead] == [b"{poison again"]
            assert proc.poll() is None, log_path.read_text()[-3000:]

            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=30)
            assert time.monotonic() - started < 10.0
            assert code == 0, log_path.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "event=producer_rebuilt name=dead-letter" in log


def test_a_dead_letter_that_cannot_be_delivered_blocks_nothing_but_its_batch(
    settings: Settings, tmp_path: Path, mongo_db: Any, kafka_topics: Any
) -> None:
    """The dead-letter topic refuses everything: the batch waits (uncommitted), the process stays
    up and keeps its group, and SIGTERM still ends it within the grace period."""
    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=1)
    kafka_topics.create(topics.items, partitions=1)
    broken = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topics": topics.model_copy(update={"dead_letter": "no such topic!"})}
            )
        }
    )
    send_to(settings, 0, (b"pu1", orjson.dumps(event("s1"))))
    log_path = tmp_path / "consumer.log"
    grace = 6.0
    proc = consume_process(broken, log_path, STREAMREC_CONSUMER__SHUTDOWN_GRACE_S=str(grace))
    try:
        wait_until(lambda: mongo_db["events"].count_documents({}) == 1, 60, "first event stored")
        send_to(settings, 0, (b"pu1", b"{poison"), (b"pu1", orjson.dumps(event("s2"))))
        wait_until(lambda: "sink=kafka" in log_path.read_text(), 30, "the dead-letter sink retried")
        time.sleep(2.0)
        assert proc.poll() is None, log_path.read_text()[-3000:]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        assert time.monotonic() - started < grace, log_path.read_text()[-3000:]
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # Nothing past the stored event was committed: the poison record and s2 come again.
    consumer = make_consumer(settings.kafka)
    try:
        committed = consumer.committed([TopicPartition(topics.events, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed[0].offset == 1
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# Measured (2026-11-30, dev stack): 79 MiB before the outage, at most 100 MiB while 50,000 events
# arrived during it. Paused partitions fetch nothing; only librdkafka's capped prefetch is held.
RSS_BOUND_MIB = 160.0


@pytest.mark.timeout(600)  # 50,000 events through the dev MongoDB server after the outage
def test_mongodb_outage_pauses_everything_with_bounded_memory_and_loses_nothing(
    settings: Settings, tmp_path: Path, kafka_topics: Any
) -> None:
    import pymongo

    from tooling.devstack.servers import start_server as start

    topics = settings.kafka.topics
    kafka_topics.create(topics.events, partitions=4)
    kafka_topics.create(topics.items, partitions=1)
    mongo_port = free_port()
    mongo_base = tmp_path / "mongo"
    mongo = start("mongo", mongo_base, mongo_port)
    uri = f"mongodb://127.0.0.1:{mongo_port}"
    live = settings.model_copy(
        update={"mongo": settings.mongo.model_copy(update={"uri": SecretStr(uri), "timeout_ms": 2000})}
    )
    client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=20_000)
    events = client[live.mongo.database]["events"]
    log_path = tmp_path / "consumer.log"
    proc = consume_process(live, log_path, STREAMREC_CONSUMER__BATCH_SIZE="2000")
    producer = make_producer(live.kafka, **{"linger.ms": 20, "batch.num.messages": 10_000})
    n = 50_000

    def produce(first: int, count: int) -> None:
        for i in range(first, first + count):
            body = orjson.dumps(event(f"m{i}", user=f"u{i % 997}", item_id=f"i{i % 313}"))
            while True:
                try:
                    producer.produce(topics.events, key=f"u{i % 997}".encode(), value=body)
                    break
                except BufferError:
                    producer.poll(0.05)
        flush_or_raise(producer, timeout_s=60)

    try:
        produce(0, 100)
        wait_until(lambda: events.count_documents({}) == 100, 60, "events stored before the outage")
        before = rss_mib(proc.pid)
        stop_server(mongo, timeout_s=1.0)
        peak = before
        produce(100, n)
        # Keep the outage going a little after the last event, sampling memory all along.
        outage_end = time.monotonic() + 10
        while time.monotonic() < outage_end:
            peak = max(peak, rss_mib(proc.pid))
            time.sleep(0.25)
        assert "event=partitions_paused" in log_path.read_text()
        assert proc.poll() is None, log_path.read_text()[-3000:]
        print(f"consumer RSS before the outage {before:.0f} MiB, peak during it {peak:.0f} MiB")
        assert peak < RSS_BOUND_MIB, (before, peak)

        mongo = start("mongo", mongo_base, mongo_port)
        recovered = time.monotonic()

        # Polled gently with the cheap count: the dev MongoDB server is the bottleneck here
        # (~2,500 events/s on an idle machine, so ~20 s; far slower on a loaded one).
        deadline = time.monotonic() + 300
        while (stored := events.estimated_document_count()) < n + 100 and time.monotonic() < deadline:
            time.sleep(2.0)
        print(f"{stored} events stored {time.monotonic() - recovered:.0f}s after recovery")
        assert events.count_documents({}) == n + 100
        assert "event=sink_recovered" in log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        client.close()
        stop_server(mongo)
