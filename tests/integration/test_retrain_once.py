"""`streamrec retrain --once` end to end: events in MongoDB → trained, gated, published model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import cli.retrain_cmd  # noqa: F401  (registers the commands)
from cli.app import app
from core.settings import Settings
from storage.event_store import MongoEventStore
from storage.model_registry_mongo import open_model_registry

N_USERS, N_ITEMS, PER_USER, CLUSTERS = 200, 100, 15, 5


def _events(seed: int = 7) -> list[dict[str, Any]]:
    """Users each shop mostly in one of five item clusters, so there is something to learn."""
    rng = np.random.default_rng(seed)
    start = datetime.now(UTC) - timedelta(days=3)
    docs = []
    for u in range(N_USERS):
        cluster = u % CLUSTERS
        own = np.arange(cluster, N_ITEMS, CLUSTERS)
        picks = [
            int(rng.choice(own)) if rng.random() < 0.85 else int(rng.integers(N_ITEMS))
            for _ in range(PER_USER)
        ]
        for j, item in enumerate(picks):
            ts = start + timedelta(seconds=int(rng.integers(0, 3 * 86400)))
            kind = "purchase" if j % 7 == 0 else "view"
            docs.append(
                {
                    "_id": f"ev-{u}-{j}",
                    "user_id": f"user-{u}",
                    "item_id": f"item-{item}",
                    "event_type": kind,
                    "ts": ts,
                    "ts_ms": int(ts.timestamp() * 1000),
                    "value": None,
                }
            )
    return docs


@pytest.fixture
def env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = {
        "STREAMREC_MONGO__URI": settings.mongo.uri.get_secret_value(),
        "STREAMREC_MONGO__DATABASE": settings.mongo.database,
        "STREAMREC_MODEL__ARTIFACT_CACHE_DIR": str(settings.model.artifact_cache_dir),
        "STREAMREC_MODEL__FACTORS": "32",
        "STREAMREC_MODEL__EPOCHS": "2",
        "STREAMREC_RETRAIN__METRICS_PORT": "0",
        "STREAMREC_RETRAIN__WINDOW_DAYS": "30",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return settings


def test_retrain_once_publishes_a_champion_then_gates_the_next_run(env: Settings) -> None:
    store = MongoEventStore.from_settings(env.mongo)
    store.ensure_indexes()
    docs = _events()
    store.insert_events(docs)
    # An erased user's events must never reach a model.
    store.insert_events([{**docs[0], "_id": "late", "user_id": "erased-user", "item_id": "secret-item"}])
    store.erasures.insert_one({"_id": "erased-user"})
    runner = CliRunner()

    first = runner.invoke(app, ["retrain", "--once"])
    assert first.exit_code == 0, first.output
    registry = open_model_registry(env)
    try:
        champ = registry.champion()
        assert champ is not None and champ.version == 1 and champ.status == "champion"
        assert champ.n_events == len(docs)
        assert champ.gate["eval_users"] > 20
        # Clustered data: a working model clearly beats a random ranking (about 0.07 NDCG@10 here).
        assert champ.metrics["holdout_ndcg@10"] > 0.15
        files = registry.load_files(1)
        assert not any(b"secret-item" in data for data in files.values())

        second = runner.invoke(app, ["retrain", "--once"])
        assert second.exit_code == 0, second.output
        rec2 = registry.get(2)
        assert rec2.gate["champion_version"] == 1 and rec2.gate["champion_ndcg"] is not None
        # Enough evidence for the default minimums (50 users, 200 events): a real verdict.
        assert rec2.gate["judged"] is True and rec2.gate["eval_events"] >= 200
        assert rec2.status in {"champion", "rejected"}
        assert (registry.champion().version == 2) == (rec2.status == "champion")  # type: ignore[union-attr]

        promoted = runner.invoke(app, ["model", "promote", "2", "--reason", "checked by hand"])
        assert promoted.exit_code == 0, promoted.output
        assert registry.champion().version == 2  # type: ignore[union-attr]
        rolled = runner.invoke(app, ["model", "rollback"])
        assert rolled.exit_code == 0 and "v1" in rolled.output
        assert registry.champion().version == 1 and registry.get(2).status == "retired"  # type: ignore[union-attr]
        again = runner.invoke(app, ["model", "rollback"])
        assert again.exit_code != 0 and "no previous champion" in str(again.exception)

        listing = runner.invoke(app, ["model", "list"])
        assert listing.exit_code == 0 and "champion" in listing.output
        shown = runner.invoke(app, ["model", "show", "1"])
        assert shown.exit_code == 0 and '"version": 1' in shown.output
    finally:
        registry.close()
        store.close()


def test_too_little_evidence_is_published_not_judged(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MongoEventStore.from_settings(env.mongo)
    store.ensure_indexes()
    store.insert_events(_events())
    runner = CliRunner()
    try:
        first = runner.invoke(app, ["retrain", "--once"])
        assert first.exit_code == 0, first.output
        monkeypatch.setenv("STREAMREC_RETRAIN__GATE_MIN_USERS", "100000")
        second = runner.invoke(app, ["retrain", "--once"])
        assert second.exit_code == 0, second.output
        assert "not_judged" in second.output
        registry = open_model_registry(env)
        try:
            rec = registry.get(2)
            assert rec.status == "not_judged" and registry.champion().version == 1  # type: ignore[union-attr]
            assert rec.gate["judged"] is False and rec.gate["min_users"] == 100000
            assert rec.gate["eval_users"] > 20 and rec.gate["candidate_ndcg"] is not None
            assert "not judged" in (rec.reason or "") and "v1 kept" in (rec.reason or "")
        finally:
            registry.close()
        listing = runner.invoke(app, ["model", "list"])
        assert listing.exit_code == 0 and "not_judged" in listing.output and "unjudged" in listing.output
    finally:
        store.close()


def test_retrain_once_without_events_fails_with_one_line(env: Settings) -> None:
    result = CliRunner().invoke(app, ["retrain", "--once"])
    assert result.exit_code != 0
    assert "no events" in str(result.exception)
