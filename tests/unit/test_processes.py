"""Helpers that hand settings to child processes and measure them (no servers needed)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.settings import KafkaSettings, KafkaTopics, RedisSettings, ServingSettings, Settings
from tooling.devstack.processes import (
    child_env,
    process_cpu_seconds,
    scratch_settings,
    settings_env,
    start_streamrec,
)


def test_settings_survive_the_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka=KafkaSettings(bootstrap="h:1", topics=KafkaTopics(events="e-x"), group_id="g-x"),
        redis=RedisSettings(url=SecretStr("redis://r:2/3"), key_prefix="p:"),
        serving=ServingSettings(api_keys_read=[SecretStr("k1"), SecretStr("k2")], public_read=False),
    )
    env = settings_env(original)
    assert env["STREAMREC_KAFKA__TOPICS__EVENTS"] == "e-x"
    assert env["STREAMREC_REDIS__URL"] == "redis://r:2/3"
    for key in [k for k in os.environ if k.startswith("STREAMREC_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    rebuilt = Settings(_env_file=None)  # type: ignore[call-arg]
    assert rebuilt.model_dump() == original.model_dump()
    assert [k.get_secret_value() for k in rebuilt.serving.api_keys_read] == ["k1", "k2"]
    assert rebuilt.redis.url.get_secret_value() == "redis://r:2/3"


def test_child_env_replaces_the_parents_streamrec_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SOMETHING_STALE", "1")
    env = child_env(Settings(_env_file=None), {"EXTRA": "yes"})  # type: ignore[call-arg]
    assert "STREAMREC_SOMETHING_STALE" not in env
    assert env["EXTRA"] == "yes" and env["STREAMREC_KAFKA__GROUP_ID"] == "streamrec-consumer"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cpu_seconds_of_this_process_grow() -> None:
    before = process_cpu_seconds(os.getpid())
    assert before is not None
    sum(i * i for i in range(2_000_000))
    after = process_cpu_seconds(os.getpid())
    assert after is not None and after > before


def test_managed_child_reports_its_failure(tmp_path: Path) -> None:
    proc = start_streamrec(["no-such-command"], Settings(_env_file=None), name="t", log_dir=tmp_path)  # type: ignore[call-arg]
    assert proc.popen.wait(60) != 0
    assert "no-such-command" in proc.log_tail() or "No such command" in proc.log_tail()
    assert proc.stop() != 0


def test_scratch_settings_give_every_topic_a_name_of_its_own() -> None:
    """A benchmark's consumer and API must not read or write another run's (or production's) topics,
    the impressions topic included."""
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    first, second = scratch_settings(base, "x"), scratch_settings(base, "x")
    names = ("events", "items", "dead_letter", "impressions")
    for run in (first, second):
        topics = [getattr(run.kafka.topics, name) for name in names]
        assert len(set(topics)) == len(names)
        assert not set(topics) & {getattr(base.kafka.topics, name) for name in names}
    assert not {getattr(first.kafka.topics, n) for n in names} & {
        getattr(second.kafka.topics, n) for n in names
    }
    assert first.mongo.database != second.mongo.database
