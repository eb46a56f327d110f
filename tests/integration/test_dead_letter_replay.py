"""`streamrec dead-letter list|replay` on real servers: a record refused by the consumer is fixed on the
consumer's side, replayed once (stored once), and replayed again (still stored once)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

import cli.dead_letter  # noqa: F401  (registers the commands)
import core.events
from cli.app import app
from core.keys import Keys
from core.settings import Settings
from storage.dead_letters import read_dead_letters
from storage.kafka import flush_or_raise, make_producer
from storage.realtime_state import RedisRealtimeState
from tests.integration.test_consumer_e2e import event, running_consumer, wait_until


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    topics = settings.kafka.topics
    for name, value in {
        "STREAMREC_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "STREAMREC_KAFKA__TOPICS__EVENTS": topics.events,
        "STREAMREC_KAFKA__TOPICS__ITEMS": topics.items,
        "STREAMREC_KAFKA__TOPICS__DEAD_LETTER": topics.dead_letter,
    }.items():
        monkeypatch.setenv(name, value)
    return settings


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(app, ["dead-letter", *args, "--wait", "1.5"])
    assert result.exit_code == 0, result.output
    return result


def test_a_fixed_record_is_replayed_once_and_a_second_replay_changes_nothing(
    env: Settings, kafka_topics: Any, mongo_db: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pop_all = Keys(env.redis.key_prefix).pop_all()
    topics = env.kafka.topics
    kafka_topics.create(topics.events, partitions=1)
    kafka_topics.create(topics.items, partitions=1)
    kafka_topics.create(topics.dead_letter, partitions=1)
    producer = make_producer(env.kafka)
    # A shop whose clock runs two days ahead: refused by the 1-day future limit.
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    with running_consumer(env) as (_runner, thread, result):
        producer.produce(topics.events, key=b"u1", value=event("ahead-1", timestamp=ahead))
        producer.produce(topics.events, key=b"u1", value=b'{"event_id": "broken", ')
        producer.produce(topics.events, key=b"u1", value=event("ok-1"))
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({}) == 1, 60, "the valid event stored")
        wait_until(lambda: len(list(read_dead_letters(env.kafka, idle_s=1.0))) == 2, 30, "2 dead letters")

        listed = _cli("list", "--json")
        rows = [json.loads(line) for line in listed.output.splitlines()]
        assert sorted(r["code"] for r in rows) == ["bad_json", "future_timestamp"]
        ahead_row = next(r for r in rows if r["code"] == "future_timestamp")
        assert ahead_row["source_topic"] == topics.events and ahead_row["key"] == "u1"
        assert json.loads(ahead_row["value"])["event_id"] == "ahead-1"
        table = _cli("list", "--code", "future_timestamp", "--since", "1h")
        assert "future_timestamp" in table.output and "bad_json" not in table.output

        # The fix: the consumer now accepts clocks up to a week ahead (deployed as a new rule).
        monkeypatch.setattr(core.events, "MAX_FUTURE", timedelta(days=7))
        dry = _cli("replay", "--code", "future_timestamp", "--dry-run")
        assert "would replay 1" in dry.output
        time.sleep(2.0)
        assert mongo_db["events"].count_documents({"_id": "ahead-1"}) == 0, "a dry run sends nothing"

        first = _cli("replay", "--code", "future_timestamp")
        assert f"replayed 1 dead letters: 1 to {topics.events}" in first.output
        wait_until(lambda: mongo_db["events"].count_documents({"_id": "ahead-1"}) == 1, 30, "replay stored")
        stored = mongo_db["events"].find_one({"_id": "ahead-1"})
        assert stored["src"]["offset"] == 3, "stored from the replayed record"
        state = RedisRealtimeState.from_settings(env.redis)
        wait_until(
            lambda: state.applied_offsets([(topics.events, 0)])[(topics.events, 0)] >= 3, 30, "applied"
        )
        two_views = float(redis_client.zscore(pop_all, "i1"))

        second = _cli("replay", "--code", "future_timestamp")
        assert "replayed 1" in second.output
        producer.produce(topics.events, key=b"u1", value=event("ok-2"))
        flush_or_raise(producer)
        wait_until(lambda: mongo_db["events"].count_documents({"_id": "ok-2"}) == 1, 30, "a later event")
        wait_until(
            lambda: state.applied_offsets([(topics.events, 0)])[(topics.events, 0)] >= 5, 30, "applied"
        )
        assert thread.is_alive(), result
        # Redis counted the replayed event once: the second replay was a duplicate without effects.
        assert float(redis_client.zscore(pop_all, "i1")) == pytest.approx(two_views * 3 / 2)

    assert mongo_db["events"].count_documents({"_id": "ahead-1"}) == 1
    assert mongo_db["events"].count_documents({}) == 3
    # Neither replay was refused again: still the two original dead letters only.
    assert sorted(r.code for r in read_dead_letters(env.kafka, idle_s=1.0)) == [
        "bad_json",
        "future_timestamp",
    ]
