"""`streamrec retrain --once` with shopper attributes in MongoDB: the segment decision and lists reach
the registry and the artifact, and serving's loader reads them with the real model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import cli.retrain_cmd  # noqa: F401  (registers the commands)
from cli.app import app
from core.settings import Settings
from model.segment_popularity import FILE_NAME
from serving.model_loader import make_loader
from storage.event_store import MongoEventStore
from storage.model_registry_mongo import open_model_registry
from storage.shoppers_mongo import MongoShopperStore
from tests.integration.test_retrain_once import env  # noqa: F401  (the fixture)

CLUSTERS, N_ITEMS = 4, 80


def _shopper(u: str, cluster: int, start: datetime, span_s: int, n: int, rng: Any) -> list[dict[str, Any]]:
    own = np.arange(cluster, N_ITEMS, CLUSTERS)
    docs = []
    for j in range(n):
        ts = start + timedelta(seconds=int(rng.integers(0, span_s)))
        item = int(rng.choice(own[:6])) if rng.random() < 0.9 else int(rng.integers(N_ITEMS))
        docs.append(
            {
                "_id": f"ev-{u}-{j}",
                "user_id": u,
                "item_id": f"item-{item}",
                "event_type": "view",
                "ts": ts,
                "ts_ms": int(ts.timestamp() * 1000),
                "value": None,
            }
        )
    return docs


def test_retrain_records_segment_popularity_and_serving_loads_it(
    env: Settings,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The held-out part (30% of the events) holds every event of the new shoppers (17%).
    monkeypatch.setenv("STREAMREC_RETRAIN__HOLDOUT_FRACTION", "0.3")
    rng = np.random.default_rng(3)
    now = datetime.now(UTC)
    store = MongoEventStore.from_settings(env.mongo)
    store.ensure_indexes()
    shoppers = MongoShopperStore.from_settings(env.mongo)
    docs: list[dict[str, Any]] = []
    # Old shoppers over three days; new ones only in the last hour (the held-out part). Cluster 0 is
    # the biggest, so global popularity is its items; each segment shops its own cluster.
    for u in range(200):
        cluster = 0 if u < 80 else u % CLUSTERS
        user = f"old-{u}"
        docs += _shopper(user, cluster, now - timedelta(days=3), 3 * 86400 - 7200, 12, rng)
        shoppers.put_attributes(user, {"segment": f"c{cluster}", "country": "DE"}, now)
    for u in range(80):
        user = f"new-{u}"
        docs += _shopper(user, u % CLUSTERS, now - timedelta(hours=1), 3000, 6, rng)
        shoppers.put_attributes(user, {"segment": f"c{u % CLUSTERS}"}, now)
    store.insert_events(docs)
    registry = open_model_registry(env)
    try:
        result = CliRunner().invoke(app, ["retrain", "--once"])
        assert result.exit_code == 0, result.output
        record = registry.champion()
        assert record is not None
        summary = record.metrics["segment_popularity"]
        assert summary["attribute"] == "segment" and summary["wins"] is True, summary
        assert summary["segments"] == CLUSTERS and summary["eval_users"] >= 50
        files = registry.load_files(record.version)
        assert FILE_NAME in files
        loaded = make_loader(env)(files, record)
        assert loaded.segments is not None and loaded.segments.wins
        top = loaded.segments.list_for("c3")
        assert top is not None and all(int(item.split("-")[1]) % CLUSTERS == 3 for item, _ in top[:3])
    finally:
        registry.close()
        shoppers.close()
        store.close()
