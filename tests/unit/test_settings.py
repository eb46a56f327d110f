"""Settings from STREAMREC_* variables (nested with __), .devstack/stack.env and .env; bad values fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli.context import load_settings
from core.errors import ConfigError
from core.settings import Settings
from tooling.settings import ToolingSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No STREAMREC_* variable from the caller, and a cwd without .env or .devstack/."""
    for name in list(os.environ):
        if name.upper().startswith("STREAMREC_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_point_at_the_dev_stack() -> None:
    s = load_settings()
    assert s.kafka.bootstrap == "127.0.0.1:19092"
    assert s.kafka.topics.events == "streamrec.events"
    assert s.kafka.session_timeout_ms == 6000
    assert s.mongo.uri.get_secret_value() == "mongodb://127.0.0.1:27018"
    # 6379 belongs to a system Redis; the dev stack never uses it.
    assert s.redis.url.get_secret_value() == "redis://127.0.0.1:6380/0"
    assert s.consumer.batch_size == 500
    assert s.serving.api_keys_read == []


def test_the_tooling_settings_add_the_dev_stack_section() -> None:
    s = load_settings(ToolingSettings)
    assert (s.devstack.kafka_port, s.devstack.mongo_port, s.devstack.redis_port) == (19092, 27018, 6380)
    assert s.devstack.dir == Path(".devstack")
    assert not hasattr(load_settings(), "devstack")


def test_the_product_settings_ignore_the_dev_stack_variables(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A production .env or environment may still carry them (copied from .env.example).
    monkeypatch.setenv("STREAMREC_DEVSTACK__REDIS_PORT", "six")
    (clean_env / ".env").write_text("STREAMREC_DEVSTACK__KAFKA_PORT=29092\nSTREAMREC_KAFKA__GROUP_ID=g\n")
    assert load_settings().kafka.group_id == "g"
    monkeypatch.setenv("STREAMREC_DEVSTACK__REDIS_PORT", "6390")
    tooling = load_settings(ToolingSettings)
    assert (tooling.devstack.kafka_port, tooling.devstack.redis_port) == (29092, 6390)


def test_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA__TOPICS__EVENTS", "shop.events")
    monkeypatch.setenv("STREAMREC_KAFKA__GROUP_ID", "g1")
    monkeypatch.setenv("STREAMREC_CONSUMER__BATCH_SIZE", "42")
    monkeypatch.setenv("STREAMREC_MODEL__WEIGHTS__PURCHASE", "7.5")
    monkeypatch.setenv("STREAMREC_RETRAIN__WINDOW_DAYS", "30")
    monkeypatch.setenv("STREAMREC_SERVING__API_KEYS_READ", '["k1", "k2"]')
    s = load_settings()
    assert s.kafka.topics.events == "shop.events"
    assert s.kafka.topics.items == "streamrec.items", "siblings keep their defaults"
    assert s.kafka.group_id == "g1"
    assert s.consumer.batch_size == 42
    assert s.model.weights.purchase == 7.5
    assert s.model.weights.view == 1.0
    assert s.retrain.window_days == 30.0
    assert [k.get_secret_value() for k in s.serving.api_keys_read] == ["k1", "k2"]


def test_mongo_uri_is_secret_and_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MONGO__URI", "mongodb://alice:s3cret-pw@db.example:27017")
    monkeypatch.setenv("STREAMREC_REDIS__URL", "redis://:r3dis-pw@cache:6379/1")
    s = load_settings()
    assert isinstance(s.mongo.uri, SecretStr)
    assert s.mongo.uri.get_secret_value() == "mongodb://alice:s3cret-pw@db.example:27017"
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "s3cret-pw" not in text
        assert "r3dis-pw" not in text


def test_stack_env_file_is_read_and_real_env_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".devstack").mkdir()
    (clean_env / ".devstack" / "stack.env").write_text(
        "STREAMREC_KAFKA__BOOTSTRAP=127.0.0.1:29092\nSTREAMREC_REDIS__URL=redis://127.0.0.1:29379/0\n"
    )
    s = load_settings()
    assert s.kafka.bootstrap == "127.0.0.1:29092"
    assert s.redis.url.get_secret_value() == "redis://127.0.0.1:29379/0"
    monkeypatch.setenv("STREAMREC_KAFKA__BOOTSTRAP", "broker:9092")
    assert load_settings().kafka.bootstrap == "broker:9092"


def test_explicit_settings_ignore_env_files(clean_env: Path) -> None:
    (clean_env / ".env").write_text("STREAMREC_KAFKA__GROUP_ID=from-dotenv\n")
    assert load_settings().kafka.group_id == "from-dotenv"
    assert Settings(_env_file=None).kafka.group_id == "streamrec-consumer"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STREAMREC_CONSUMER__BATCH_SIZE", "0"),
        ("STREAMREC_CONSUMER__BATCH_SIZE", "lots"),
        ("STREAMREC_SERVING__PORT", "abc"),
        ("STREAMREC_SERVING__PORT", "70000"),
        ("STREAMREC_SERVING__PUBLIC_READ", "maybe"),
        ("STREAMREC_RETRAIN__HOLDOUT_FRACTION", "1.5"),
        ("STREAMREC_MODEL__WEIGHTS__VIEW", "x"),
        ("STREAMREC_MODEL__FACTORS", "1"),
        ("STREAMREC_KAFKA__SESSION_TIMEOUT_MS", "soon"),
        ("STREAMREC_DEVSTACK__REDIS_PORT", "six"),
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings(ToolingSettings)
    message = str(info.value)
    assert variable in message
    assert "\n" not in message


def test_bad_json_list_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SERVING__API_KEYS_READ", "not-json")
    with pytest.raises(ConfigError, match="STREAMREC_SERVING"):
        load_settings()
