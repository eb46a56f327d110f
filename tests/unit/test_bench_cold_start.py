"""`streamrec bench cold-start` on tiny synthetic data: the split, the baselines, the hybrid, the report."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from core.errors import StreamrecError
from core.event_table import EventTable
from tooling.bench import cold_start_run
from tooling.bench.cold_start import cold_start
from tooling.bench.cold_start_data import (
    Catalog,
    amazon_catalog,
    amazon_events,
    movielens_100k_catalog,
    movielens_latest_catalog,
    taobao_catalog,
)
from tooling.bench.cold_start_eval import (
    cold_figures,
    served_all_figures,
    served_warm_figures,
    warm_figures,
)
from tooling.bench.cold_start_models import CategoryPopularity, Features, Hybrid
from tooling.bench.cold_start_split import ColdSplit, cold_split, shifted_cold_split

N_ITEMS = 40  # items i0..i39: even ones are "red", odd ones "blue"; item k is released at time 100 k


def synthetic(n_users: int = 60, seed: int = 0) -> tuple[EventTable, Catalog]:
    """Users like one colour: each interacts with ~12 items of it (after release) and 1 of the other."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, int]] = []
    for u in range(n_users):
        colour = u % 2
        own = [k for k in range(N_ITEMS) if k % 2 == colour]
        other = [k for k in range(N_ITEMS) if k % 2 != colour]
        picks = [*rng.choice(own, size=12, replace=False), int(rng.choice(other))]
        rows += [(f"u{u}", f"i{k}", 100 * int(k) + int(rng.integers(0, 5000))) for k in picks]
    users, items, ts = (np.array(col) for col in zip(*rows, strict=True))
    n = len(users)
    table = EventTable(users, items, np.full(n, "view"), np.full(n, np.nan), ts.astype(np.int64))
    colours = ("red", "blue")
    docs = {
        f"i{k}": {"item_id": f"i{k}", "category": colours[k % 2], "title": f"{colours[k % 2]} thing"}
        for k in range(N_ITEMS)
    }
    return table, Catalog(docs, {f"i{k}": [colours[k % 2]] for k in range(N_ITEMS)}, "synthetic")


def test_cold_items_are_the_newest_and_leave_training() -> None:
    rows = [("u1", f"i{k}", 10 * k) for k in range(1, 9)] + [("u1", "i9", 500), ("u1", "i10", 600)]
    rows += [("u2", "i1", 1), ("u2", "i2", 2), ("u2", "i7", 3), ("u2", "i10", 700), ("u3", "i10", 800)]
    users, items, ts = (np.array(col) for col in zip(*rows, strict=True))
    split = cold_split(users, items, ts)
    # 10 items: the newest ceil(20%) = 2 by first interaction are cold.
    assert split.cold_ids.tolist() == ["i10", "i9"]
    assert not set(split.cold_ids) & set(split.warm_ids)
    # u3 has only a cold item: no training, not evaluated; u2's cold pair is a cold test pair.
    assert split.user_ids.tolist() == ["u1", "u2"]
    assert split.cold_test.nnz == 3  # u1: i9, i10; u2: i10
    # u1 has 8 warm items: the newest ceil(1.6) = 2 (i7, i8) are warm test, but only i7 is in anyone's
    # training (u2's: 3 warm items, too few to hold any out), so i8 is dropped.
    assert split.warm_ids[split.warm_test[0].indices].tolist() == ["i7"]
    assert "i8" not in split.warm_ids
    assert split.train[0].nnz == 6 and split.train[1].nnz == 3
    assert split.stats()["cold_items_with_test_pairs"] == 2


def test_validation_split_is_inside_training() -> None:
    table, _ = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    val = split.validation()
    assert set(val.warm_ids) | set(val.cold_ids) <= set(split.warm_ids)
    assert val.cutoff_ms < split.cutoff_ms


def _test_pairs(split: ColdSplit) -> set[tuple[str, str]]:
    warm, cold = split.warm_test.tocoo(), split.cold_test.tocoo()
    return {(split.user_ids[r], split.warm_ids[c]) for r, c in zip(warm.row, warm.col, strict=True)} | {
        (split.user_ids[r], split.cold_ids[c]) for r, c in zip(cold.row, cold.col, strict=True)
    }


def test_holdout_shift_tests_on_the_window_before_the_cutoff() -> None:
    table, _ = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    shifted = shifted_cold_split(table.user_id, table.item_id, table.ts_ms, shift=1)
    first: dict[str, int] = {}
    for item, ts in zip(table.item_id, table.ts_ms, strict=True):
        first[item] = min(first.get(item, ts), int(ts))
    # The shifted test period (cutoff', cutoff] ends before the unshifted one (after cutoff) starts ...
    assert shifted.cutoff_ms < split.cutoff_ms == shifted.ends_ms
    assert shifted.train_ts.data.max() <= split.cutoff_ms
    # ... its cold items are those first seen inside it, none of them cold before ...
    in_window = {i for i, t in first.items() if shifted.cutoff_ms < t <= split.cutoff_ms}
    assert set(shifted.cold_ids) == in_window and len(in_window) > 0
    assert not set(shifted.cold_ids) & set(split.cold_ids)
    # ... and no pair it tests on was tested on before: it was all unshifted training.
    assert shifted.cold_test.nnz > 0 and shifted.warm_test.nnz > 0
    assert not _test_pairs(shifted) & _test_pairs(split)
    assert shifted.stats()["ends_ms"] == split.cutoff_ms and "ends_ms" not in split.stats()


def test_each_holdout_shift_is_one_more_step_back() -> None:
    table, _ = synthetic(n_users=120)
    splits = [shifted_cold_split(table.user_id, table.item_id, table.ts_ms, shift=n) for n in range(3)]
    assert splits[0].ends_ms is None
    for later, earlier in itertools.pairwise(splits):
        assert earlier.ends_ms == later.cutoff_ms and earlier.cutoff_ms < later.cutoff_ms


def test_category_popularity_follows_the_users_categories() -> None:
    table, catalog = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    model = CategoryPopularity(alpha=1.0).fit(split, catalog)
    scores = model.cold_scores(np.arange(split.n_users))
    red = np.array([int(i[1:]) % 2 == 0 for i in split.cold_ids])
    for row, user in enumerate(split.user_ids):
        mine = red if int(user[1:]) % 2 == 0 else ~red
        assert scores[row, mine].min() > scores[row, ~mine].max()
    # The global variant gives every user the same ranking.
    assert np.ptp(model.global_scores(np.arange(3)), axis=0).max() == 0.0


def test_hybrid_ranks_cold_items_of_the_users_colour_first() -> None:
    table, catalog = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    hybrid = Hybrid(factors=8, reg=10.0).fit(split, catalog)
    figures = cold_figures(hybrid.cold_scores, split, k=4)
    # 8 cold items, 4 per colour; a user's cold items are of their colour (but one stray): ranking their
    # colour first is well above the random ranking's NDCG@4 (about 0.3 here).
    assert figures.users > 20
    assert figures.metrics["ndcg@4"] > 0.6
    assert hybrid.warm_scores(np.arange(2)).shape == (2, len(split.warm_ids))
    assert hybrid.served_scores(np.arange(2)).shape == (2, len(split.warm_ids) + len(split.cold_ids))
    assert hybrid.chosen_content_fit in ("ridge", "ranking") and hybrid.chosen_content_reg > 0


def test_served_warm_figures_let_cold_items_compete() -> None:
    table, _ = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    n_cold = len(split.cold_ids)
    truth = np.asarray(split.warm_test.todense(), dtype=np.float64)

    def served(cold_level: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda rows: np.hstack([truth[rows], np.full((len(rows), n_cold), cold_level)])

    alone = warm_figures(lambda rows: truth[rows], split).metrics["ndcg@10"]
    assert alone == pytest.approx(1.0)
    # New items scored below every warm test item change nothing; above all of them, they fill the top.
    assert served_warm_figures(served(-1.0), split).metrics["ndcg@10"] == pytest.approx(alone)
    assert n_cold == 8  # of 10 places, the new items take the first 8
    assert served_warm_figures(served(2.0), split).metrics["ndcg@10"] < 0.5 * alone


def test_served_all_figures_count_new_items_taken() -> None:
    table, _ = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    warm = np.asarray(split.warm_test.todense(), dtype=np.float64)
    cold = np.asarray(split.cold_test.todense(), dtype=np.float64)
    users_with_cold = np.flatnonzero(cold.sum(axis=1) > 0)
    assert len(users_with_cold) > 0
    perfect = served_all_figures(lambda rows: np.hstack([warm[rows], cold[rows]]), split)
    assert perfect.metrics["ndcg@10"] == pytest.approx(1.0)
    unreachable = served_all_figures(
        lambda rows: np.hstack([warm[rows], np.full((len(rows), cold.shape[1]), -np.inf)]), split
    )
    assert unreachable.metrics["ndcg@10"] < 1.0  # a taken new item that is never shown is a miss


def test_hybrid_trains_with_the_products_settings() -> None:
    from core.settings import ModelSettings

    cfg, product = Hybrid(factors=8, reg=10.0, seed=3).config(), ModelSettings()
    assert (cfg.factors, cfg.reg, cfg.seed) == (8, 10.0, 3)
    assert (cfg.recency_boost, cfg.recency_half_life) == (product.recency_boost, product.recency_half_life)
    assert cfg.diag_correction == product.diag_correction
    assert Hybrid().content_fit == product.content_fit


def test_lightfm_scores_cold_items_from_features() -> None:
    pytest.importorskip("lightfm")
    from tooling.bench.cold_start_models import LightFMModel

    table, catalog = synthetic()
    split = cold_split(table.user_id, table.item_id, table.ts_ms)
    model = LightFMModel(no_components=8, epochs=30, identity=False, threads=1).fit(
        split, Features.of(split, catalog)
    )
    assert model.cold_scores(np.arange(5)).shape == (5, len(split.cold_ids))
    assert cold_figures(model.cold_scores, split, k=4).metrics["ndcg@4"] > 0.5


def test_report_has_every_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cold_start_run, "load_cold_start", lambda name, folder: synthetic())
    monkeypatch.setattr(cold_start_run, "lightfm_available", lambda: False)
    out = tmp_path / "cold.json"
    report = cold_start_run.run_cold_start("synthetic", tmp_path, out, trials=3)
    saved = json.loads(out.read_text())
    assert saved["results"] == report["results"]
    models = [r["model"] for r in saved["results"]]
    assert models == ["hybrid", "category_popularity", "category_popularity_global"]
    for row in saved["results"]:
        assert {"recall@20", "ndcg@20", "cold_items", "users"} <= row.keys()
        assert row["cold_items"] == 8
    assert saved["results"][0]["ndcg@20"] > 0.5
    assert {
        "warm_ndcg@10_with_content",
        "warm_ndcg@10_without_content",
        "protocol",
        "git_revision",
    } <= saved.keys()
    lo, hi = saved["warm_difference"]["ci95"]
    assert lo <= saved["warm_difference"]["mean"] <= hi
    assert saved["warm_difference"]["resamples"] == 1000
    served = saved["served_ndcg@10_all_test_items"]
    assert served["difference"]["ci95"][0] <= served["difference"]["mean"] <= served["difference"]["ci95"][1]
    assert "lightfm is not importable" in saved["notes"][0]
    diff = saved["cold_ndcg@20_hybrid_minus"]["category_popularity"]
    assert diff["ci95"][0] <= diff["mean"] <= diff["ci95"][1]
    assert saved["command"].startswith("streamrec")
    assert "hybrid_at_least_1.5x_category_popularity" in saved["targets"]
    assert saved["holdout_shift"] == 0 and "holdout shift" not in saved["protocol"]
    # The same search budget for every tuned model, each trial on record.
    for name in ("hybrid", "category_popularity"):
        assert saved["tuning"][name]["trials"] == len(saved["tuning"][name]["history"]) == 3
        assert isinstance(saved["tuning"][name]["edges"], list)


def test_hybrid_factors_end_at_the_rank_as_a_natural_limit() -> None:
    small = cold_start_run.hybrid_space(sp.csr_matrix((300, 5000)))["factors"]
    assert small.high == 300 and small.edge(300) is None and small.edge(8) == "low"
    large = cold_start_run.hybrid_space(sp.csr_matrix((9000, 8000)))["factors"]
    assert large.high == cold_start_run.HYBRID_MAX_FACTORS and large.edge(large.high) == "high"


def test_report_records_the_holdout_shift(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(cold_start_run, "load_cold_start", lambda name, folder: synthetic())
    monkeypatch.setattr(cold_start_run, "lightfm_available", lambda: False)
    table, _ = synthetic()
    unshifted = cold_split(table.user_id, table.item_id, table.ts_ms)
    out = tmp_path / "cold.json"
    cold_start_run.run_cold_start("synthetic", tmp_path, out, holdout_shift=1, trials=1)
    saved = json.loads(out.read_text())
    assert saved["holdout_shift"] == 1 and "holdout shift" in saved["protocol"]
    assert saved["split"]["ends_ms"] == unshifted.cutoff_ms
    assert saved["split"]["cutoff_ms"] < unshifted.cutoff_ms


def test_unknown_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StreamrecError, match="unknown dataset"):
        cold_start(dataset="nope", data_dir=tmp_path, json_out=None, seed=1)
    with pytest.raises(StreamrecError, match="not found"):
        # A direct call (not through typer) passes every option it reaches.
        cold_start(
            dataset="taobao", data_dir=tmp_path, json_out=None, seed=1, holdout_shift=0, content_fit=""
        )
    with pytest.raises(StreamrecError, match="choose ridge, ranking or auto"):
        cold_start(dataset="taobao", data_dir=tmp_path, json_out=None, seed=1, content_fit="sgd")


# ------------------------------------------------------------------ metadata readers on tiny files


def test_movielens_latest_catalog(tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n"
        '2,"Heat, The (1995)",(no genres listed)\n'
    )
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n2,1,Pixar,1\n3,1,  pixar ,2\n4,99,x,3\n"
    )
    catalog = movielens_latest_catalog(tmp_path)
    assert catalog.docs["1"] == {
        "item_id": "1",
        "title": "Toy Story",
        "category": "Adventure|Animation",
        "properties": {"decade": "1990s", "tag:pixar": True},
    }
    assert catalog.cats("2") == [] and catalog.cats("1") == ["Adventure", "Animation"]
    assert catalog.doc("404") == {"item_id": "404"}


def test_movielens_100k_catalog(tmp_path: Path) -> None:
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    (tmp_path / "u.item").write_bytes("7|Caf\xe9 (1996)|01-Jan-1996||http://x|0|1|1\n".encode("latin-1"))
    doc = movielens_100k_catalog(tmp_path).docs["7"]
    assert doc["title"] == "Café" and doc["category"] == "Action|Comedy"
    assert doc["properties"] == {"decade": "1990s"}


def test_taobao_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "taobao-userbehavior-head"
    folder.mkdir()
    (folder / "UserBehavior_head.csv").write_text(
        "user_id,item_id,category_id,behavior_type,timestamp\n1,10,77,pv,5\n2,10,77,buy,6\n"
    )
    catalog = taobao_catalog(tmp_path)
    assert catalog.docs == {"10": {"item_id": "10", "category": "c77"}}
    assert catalog.cats("10") == ["77"]


def test_amazon_catalog_and_events(tmp_path: Path) -> None:
    folder = tmp_path / "amazon-2018-magazine-subscriptions"
    folder.mkdir()
    lines = [
        {
            "asin": "A1",
            "title": "PC World",
            "brand": "IDG",
            "category": ["Magazine Subscriptions", "Tech", "PCs"],
        },
        {"asin": "A1", "title": "duplicate", "brand": "x", "category": []},
        {"asin": "A2", "title": '<span class="a"', "brand": "Smith &amp; Co", "category": []},
    ]
    with gzip.open(folder / "meta_Magazine_Subscriptions.json.gz", "wt") as fh:
        fh.write("".join(json.dumps(rec) + "\n" for rec in lines))
    catalog = amazon_catalog(tmp_path)
    assert catalog.docs["A1"] == {
        "item_id": "A1",
        "title": "PC World",
        "category": "Tech > PCs",
        "properties": {"brand": "IDG"},
    }
    assert catalog.docs["A2"] == {"item_id": "A2", "properties": {"brand": "Smith & Co"}}
    with open(folder / "Magazine_Subscriptions.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["A1", "U1", "5.0", "1005177600"], ["A2", "U1", "3.0", "1005177601"]])
    events = amazon_events(tmp_path)
    assert events.item_id.tolist() == ["A1", "A2"] and events.ts_ms[0] == 1005177600000
