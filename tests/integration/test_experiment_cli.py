"""`streamrec experiment ...` and `streamrec report online` on the real MongoDB-wire server: an
experiment is created, its impressions and attributed clicks stored, its report read, and the
winner promoted with the evidence recorded on the model record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import cli.experiment  # registers the commands (cli.report too)
import cli.report  # noqa: F401
from cli.app import app
from core.experiments import assign
from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.experiments_mongo import MongoExperimentStore
from storage.impressions_mongo import MongoImpressionStore
from storage.model_registry_mongo import open_model_registry
from tests.unit.online_fixtures import event, impression

FILES = {"model.json": b"{}"}


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STREAMREC_MONGO__URI", settings.mongo.uri.get_secret_value())
    monkeypatch.setenv("STREAMREC_MONGO__DATABASE", settings.mongo.database)
    monkeypatch.setenv("STREAMREC_MODEL__ARTIFACT_CACHE_DIR", str(settings.model.artifact_cache_dir))
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    return result


def store_traffic(settings: Settings, experiment_id: str, users: int, ctr: dict[str, float]) -> None:
    """An hour-old impression per user in their variant, and clicks on a share of them."""
    experiments = MongoExperimentStore.from_settings(settings.mongo)
    experiments.update(experiment_id, created_at=datetime.now(UTC) - timedelta(hours=2))
    exp = experiments.get(experiment_id)
    experiments.close()
    shown_at = datetime.now(UTC) - timedelta(hours=1)
    seen = dict.fromkeys(ctr, 0)
    docs, clicks = [], []
    for i in range(users):
        name = assign(exp, f"user-{i}").name
        doc = impression(f"req-{i}", f"user-{i}", experiment=experiment_id, variant=name)
        doc["ts"] = shown_at
        docs.append(doc)
        seen[name] += 1
        per_mille = round(ctr[name] * 1000)
        if seen[name] * per_mille // 1000 > (seen[name] - 1) * per_mille // 1000:
            click = event(f"ev-{i}", doc)
            click["ts"] = shown_at + timedelta(minutes=1)
            clicks.append(click)
    impressions = MongoImpressionStore.from_settings(settings.mongo)
    impressions.insert_impressions(docs)
    impressions.close()
    events = MongoEventStore.from_settings(settings.mongo)
    events.insert_events(clicks)
    events.close()


def test_create_report_and_promote_the_winner(env: Settings, tmp_path: Path) -> None:
    registry = open_model_registry(env)
    registry.promote(registry.publish(FILES, {}), "first")
    candidate = registry.publish(FILES, {})
    registry.close()

    made = run(
        "experiment", "create", "exp", "--variant", "control:0.5", "--variant", f"treatment:0.5:{candidate}"
    )
    assert made.exit_code == 0, made.output
    refused = run("experiment", "create", "exp2", "--variant", "a:0.5", "--variant", "b:0.5:99")
    assert refused.exit_code == 2 and "model v99 does not exist" in refused.output

    store_traffic(env, "exp", 2000, {"control": 0.08, "treatment": 0.14})
    shown = run("experiment", "show", "exp", "--json", str(tmp_path / "exp.json"))
    assert shown.exit_code == 0, shown.output
    report = orjson.loads((tmp_path / "exp.json").read_bytes())["report"]
    assert sum(v["users"] for v in report["variants"]) == 2000 and report["winner"] == "treatment"

    online = run("report", "online", "--since", "3h", "--by", "variant", "--json", "-")
    assert online.exit_code == 0, online.output
    rows = orjson.loads(online.output)["rows"]
    assert {(r["experiment_id"], r["group"]) for r in rows} == {("exp", "control"), ("exp", "treatment")}

    promoted = run("experiment", "promote", "exp")
    assert promoted.exit_code == 0, promoted.output
    registry = open_model_registry(env)
    try:
        record = registry.get(candidate)
        assert record.status == "champion" and record.online["report"]["winner"] == "treatment"
        assert record.online["decided_by"] == "cli" and record.online["forced"] is False
    finally:
        registry.close()
    listed = run("experiment", "list")
    assert listed.exit_code == 0 and f"treatment (v{candidate})" in listed.output
