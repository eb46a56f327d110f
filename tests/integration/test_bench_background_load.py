"""`bench freshness`'s background traffic against a real broker: the child process produces valid
events at the rate asked until SIGTERM (or its own time limit), and its figures are what Kafka holds."""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from core.events import InteractionEvent, parse_interaction
from core.settings import Settings
from storage.kafka import make_consumer
from tests.conftest import KafkaTopicHelper
from tooling.bench.background_load import USER_PREFIX, BackgroundLoad

ITEMS = [f"i{j}" for j in range(50)]


def _read_all(settings: Settings, topic: str, want: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = make_consumer(settings.kafka)
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(values) < want:
            for msg in consumer.consume(500, 0.5):
                err = msg.error()
                assert err is None or err.code() == KafkaError._PARTITION_EOF, err
                value = msg.value()
                if err is None and isinstance(value, bytes):
                    values.append(value)
        # Nothing beyond what the child reported as acknowledged.
        values.extend(m.value() or b"" for m in consumer.consume(500, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return values


def test_the_load_holds_its_rate_until_stopped_and_reports_what_kafka_acknowledged(
    settings: Settings, kafka_topics: KafkaTopicHelper, tmp_path: Path
) -> None:
    topic = kafka_topics.create(settings.kafka.topics.events)
    load = BackgroundLoad(settings, rate=200.0, item_ids=ITEMS, log_dir=tmp_path, max_s=120.0)
    try:
        load.wait_ready()
        time.sleep(2.0)
        assert load.alive()
        result = load.stop()
    finally:
        load.kill()
    assert result["failed"] == 0 and result["stopped_by_max_s"] is False
    assert 1.5 < result["elapsed_s"] < 10.0
    # Paced, not a burst: the achieved rate is the rate asked (the pacer is a little late, never early).
    assert 150.0 <= result["events_per_s"] <= 205.0
    values = _read_all(settings, topic, result["acked"])
    assert len(values) == result["acked"]
    events = [e for e in map(parse_interaction, values) if isinstance(e, InteractionEvent)]
    assert len(events) == len(values)  # every one passes the consumer's own validation
    assert all(e.user_id.startswith(USER_PREFIX) and e.item_id in ITEMS for e in events)


def test_the_load_stops_itself_after_max_s(
    settings: Settings, kafka_topics: KafkaTopicHelper, tmp_path: Path
) -> None:
    kafka_topics.create(settings.kafka.topics.events)
    load = BackgroundLoad(settings, rate=50.0, item_ids=ITEMS, log_dir=tmp_path, max_s=1.0)
    try:
        load.wait_ready()
        load.popen.wait(30)  # exits on its own: no orphan keeps producing after a crashed parent
        result = load.stop()
    finally:
        load.kill()
    assert result["stopped_by_max_s"] is True
    assert result["acked"] > 0 and result["failed"] == 0
