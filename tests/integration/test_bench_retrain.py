"""`bench retrain`'s two halves on the real MongoDB-wire server: the load stores the simulation as the
consumer stores events, and the product's `retrain --once --report` child reports its own stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from consumer.batch import CONTENT_FIELDS
from core.settings import Settings
from tooling.bench.retrain import load_events, run_product_retrain, shop_for


def test_load_then_the_products_retrain_reports_every_stage(
    settings: Settings, mongo_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small and quick; every other setting is the product's default, as in the benchmark.
    monkeypatch.setenv("STREAMREC_MODEL__FACTORS", "16")
    shop = shop_for(6000, users=150, items=400, days=2.0)
    load = load_events(settings, shop, Console(quiet=True))
    assert load["events_stored"] == 6000 == mongo_db["events"].count_documents({})
    stored = mongo_db["events"].find_one({})
    assert set(CONTENT_FIELDS) | {"_id", "ts", "src", "ingested_at"} <= set(stored)

    run = run_product_retrain(settings, tmp_path)
    assert run["outcome"] == "promoted" and run["version"] == 1 and run["n_events"] == 6000
    stages = run["stages"]
    assert list(stages) == [
        "read",
        "scrub",
        "split",
        "build",
        "train",
        "content",
        "index",
        "gate",
        "segments",
        "publish",
    ]
    assert all(f["wall_s"] >= 0 and f["peak_rss_mib"] > 0 for f in stages.values())
    assert run["read_s"] == stages["read"]["wall_s"]
    assert run["after_read_s"] == pytest.approx(
        sum(f["wall_s"] for name, f in stages.items() if name != "read"), abs=0.01
    )
    # The run's own peak (per-stage high-water marks) never exceeds what the kernel saw for the child.
    assert 0 < run["peak_rss_mib"] <= run["process_peak_rss_mib"] + 1
    champion = mongo_db["models"].find_one({"_id": 1})
    assert champion["status"] == "champion" and champion["config"]["factors"] == 16
