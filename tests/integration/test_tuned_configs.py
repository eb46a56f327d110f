"""Tuned configurations: one contract for the MongoDB adapter and the in-memory twin, and
`streamrec retrain --tune` end to end on MongoDB (the next retrain trains with what it chose)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

import cli.retrain_cmd  # noqa: F401  (registers the commands)
from cli.app import app
from core.settings import Settings
from storage.errors import RegistryError
from storage.event_store import MongoEventStore
from storage.model_registry_mongo import open_model_registry
from storage.tuned_configs import MemoryTunedConfigs, TunedConfigs
from storage.tuned_configs_mongo import MongoTunedConfigs, open_tuned_configs
from tests.integration.test_retrain_once import _events

RECORD = {
    "params": {"factors": 64, "reg": 120.5, "input_weighting": "log", "diag_correction": False},
    "score": 0.21,
    "baseline_score": 0.18,
    "trials": 12,
    "budget_s": 600.0,
    "duration_s": 41.2,
    "validation": {"users": 321, "at_edge": ["reg"]},
    "data_window": {"until": "2026-03-01T00:00:00+00:00"},
}


@pytest.fixture(params=["mongo", "twin"])
def store(request: pytest.FixtureRequest) -> Iterator[TunedConfigs]:
    if request.param == "twin":
        yield MemoryTunedConfigs()
        return
    settings: Settings = request.getfixturevalue("settings")
    mongo = open_tuned_configs(settings)
    yield mongo
    mongo.close()


def test_record_latest_and_list_newest_first(store: TunedConfigs) -> None:
    assert store.latest() is None and store.list() == []
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = store.record(RECORD)
    second = store.record({**RECORD, "params": {"factors": 128}, "score": 0.25})
    assert (first.seq, second.seq) == (1, 2)
    assert first.params == RECORD["params"] and first.score == 0.21 and first.baseline_score == 0.18
    assert first.trials == 12 and first.validation["at_edge"] == ["reg"]
    assert first.created_at.tzinfo is not None and first.created_at >= before
    assert store.latest() == second
    assert [r.seq for r in store.list()] == [2, 1] and [r.seq for r in store.list(1)] == [2]
    assert first.to_json_dict()["created_at"] == first.created_at.isoformat()


def test_bad_records_are_refused_before_anything_is_stored(store: TunedConfigs) -> None:
    for bad in ({"params": {}, "score": 0.1}, {"params": {"f": 1}, "score": None}, {**RECORD, "extra": 1}):
        with pytest.raises(RegistryError):
            store.record(bad)
    assert store.latest() is None
    assert store.record(RECORD).seq == 1


def test_mongo_records_live_beside_the_registry(settings: Settings, mongo_db: Any) -> None:
    MongoTunedConfigs(mongo_db).record(RECORD)
    doc = mongo_db["model_tuned_configs"].find_one({"_id": 1})
    assert doc["params"] == RECORD["params"]
    assert mongo_db["counters"].find_one({"_id": "tuned_config"})["seq"] == 1


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = {
        "STREAMREC_MONGO__URI": settings.mongo.uri.get_secret_value(),
        "STREAMREC_MONGO__DATABASE": settings.mongo.database,
        "STREAMREC_MODEL__ARTIFACT_CACHE_DIR": str(settings.model.artifact_cache_dir),
        # Set by the operator: wins over whatever tuning chooses.
        "STREAMREC_MODEL__FACTORS": "24",
        "STREAMREC_RETRAIN__METRICS_PORT": "0",
        "STREAMREC_RETRAIN__WINDOW_DAYS": "30",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return settings


def test_retrain_tune_records_a_config_the_next_retrain_uses(env: Settings) -> None:
    store = MongoEventStore.from_settings(env.mongo)
    store.ensure_indexes()
    store.insert_events(_events())
    runner = CliRunner()

    refused = runner.invoke(app, ["retrain", "--once", "--tune-trials", "3"])
    assert refused.exit_code != 0 and "only apply with --tune" in str(refused.exception or refused.output)

    empty = runner.invoke(app, ["model", "tuned"])
    assert empty.exit_code == 0 and "no tuned configuration yet" in empty.output
    tuned = runner.invoke(app, ["retrain", "--tune", "--tune-trials", "3", "--tune-budget-s", "120"])
    assert tuned.exit_code == 0, tuned.output
    assert "tuned config #1" in tuned.output
    tuned_store = open_tuned_configs(env)
    registry = open_model_registry(env)
    try:
        record = tuned_store.latest()
        assert record is not None and record.trials == 3
        assert registry.list() == []  # tuning alone publishes no model
        listed = runner.invoke(app, ["model", "tuned"])
        assert listed.exit_code == 0 and f"{record.score:.4f}" in listed.output

        run = runner.invoke(app, ["retrain", "--once"])
        assert run.exit_code == 0, run.output
        config = registry.list()[-1].config
        assert config["factors"] == 24
        for name in ("reg", "recency_boost", "recency_half_life", "pop_weight", "input_weighting"):
            expected = record.params[name]
            assert config[name] == (pytest.approx(expected) if isinstance(expected, float) else expected)
    finally:
        tuned_store.close()
        registry.close()
        store.close()
