"""``bench quality`` end to end on a tiny synthetic events file: equal trials per row, the report's keys,
the intervals; and ItemKNN's popularity fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from tooling.bench import quality_rows
from tooling.bench.quality import run_quality
from tooling.offline.baselines import ItemKNN

OLD_KEYS = {"model", "recall@10", "recall@20", "ndcg@10", "hr@10", "fit_s", "params"}
NEW_KEYS = {"hits@10", "users", "trials", "edge_params", "ndcg@10_delta_ci95"}


def _events(path: Path, users: int = 48, items: int = 30, seed: int = 0) -> None:
    """Two taste groups over two halves of the catalog; views and some purchases, in time order."""
    rng = np.random.default_rng(seed)
    lines = ["user_id,item_id,event_type,timestamp"]
    ts = 1_700_000_000_000
    for u in range(users):
        half = items // 2
        pool = np.arange(half) + (half if u % 2 else 0)
        for i in rng.choice(pool, size=10, replace=False):
            ts += 1000
            kind = "purchase" if rng.random() < 0.3 else "view"
            lines.append(f"u{u},i{i},{kind},{ts}")
    path.write_text("\n".join(lines) + "\n")


def test_every_row_gets_the_same_trials_and_the_report_keeps_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quality_rows, "SASREC_TRAIN_S", 0.05)  # a batch or two: the row, not its quality
    events = tmp_path / "events.csv"
    _events(events)
    out = tmp_path / "q.json"
    report = run_quality("csv", tmp_path, events, out, trials=2, command="test")
    assert json.loads(out.read_text()) == report
    rows = {r["model"]: r for r in report["results"]}
    assert {"popularity", "ease", "itemknn", "streamrec", "streamrec_no_recency", "ease_recency"} <= set(rows)
    for name, row in rows.items():
        assert set(row) >= OLD_KEYS | NEW_KEYS, name
        assert row["trials"] == (1 if name == "popularity" else 2), name
        assert row["users"] == report["split"]["users"]
        mean, lo, hi = row["ndcg@10_delta_ci95"]
        assert lo <= mean <= hi
    assert rows[report["best_baseline_by_test"]]["ndcg@10_delta_ci95"] == [0.0, 0.0, 0.0]
    sr = rows["streamrec"]
    assert {"ndcg@10_ann", "ndcg@10_ann_forced", "verdict_vs_best_baseline"} <= set(sr)
    assert sr["ndcg@10_ann"] == sr["ndcg@10"]  # 30 items: retrain searches exactly
    assert rows["streamrec_no_recency"]["params"]["recency_boost"] == 0.0
    # The production path: ModelSettings fields chosen for streamrec, trained by fit_model.
    assert {"input_weighting", "factors", "reg", "recency_boost"} <= set(sr["params"])
    assert "recency_boost" not in rows["streamrec_no_recency"]["edge_params"]
    assert report["served_path"] is True and report["command"] == "test" and report["git_revision"]
    assert {"dataset", "protocol", "validation_folds", "split", "notes"} <= set(report)


def test_itemknn_falls_back_to_popularity_for_users_it_cannot_score() -> None:
    # Items 0-1 co-occur; item 2 is popular on its own; user 3 has only item 3, which no one else has.
    train = sp.csr_matrix(
        np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=np.float32)
    )
    knn = ItemKNN(k=2)
    knn.fit(train)
    scores = knn.score(np.array([3, 2]))
    lonely = scores[0]
    # No neighbour: popularity order (item 2 seen by 4 users, then 0 and 1, then 3).
    assert lonely[2] > lonely[0] == lonely[1] > lonely[3]
    # A scored item always ranks above an unscored one.
    assert scores[1][[0, 1]].min() > scores[1][3]


def test_above_the_exact_threshold_the_row_is_also_served_through_an_exact_index(tmp_path: Path) -> None:
    """Where retrain builds an approximate index, the same fit through an exact FAISS index separates
    what the approximate index costs from how FAISS orders ties."""
    from tooling.bench.quality import prepare, streamrec_indexed

    events = tmp_path / "events.csv"
    _events(events, users=60, items=80)
    prepared = prepare("csv", tmp_path, events, 1)
    params = {"factors": 16, "exact_search_max_items": 10}
    indexed = streamrec_indexed(params, prepared)
    assert set(indexed) == {"as_retrain", "exact_index"}
    assert indexed["as_retrain"].index["kind"] == "hnsw" and indexed["exact_index"].index["kind"] == "exact"
    approx, exact = (indexed[k].evaluation for k in ("as_retrain", "exact_index"))
    assert approx.users == exact.users and exact.hits >= 1
