from pathlib import Path

import numpy as np
import pytest

from model.interactions import build_interactions
from model.lae import TrainConfig
from model.metrics import summarize
from model.pipeline import train_artifact
from model.trained_model import TrainedModel
from tooling.offline.datasets import DEFAULT_DATA_DIR, DatasetError, load_dataset
from tooling.offline.evaluation import top_k
from tooling.offline.split import temporal_split


def _load() -> object:
    try:
        return load_dataset("ml-latest-small", DEFAULT_DATA_DIR)
    except DatasetError as exc:
        pytest.skip(f"../shared/data not found: {exc}")


def test_fold_in_matches_trained_user_ndcg() -> None:
    table = _load()
    split = temporal_split(table.user_id, table.item_id, table.ts_ms)  # type: ignore[attr-defined]
    users, items, ts = split.train_triples()
    inter = build_interactions(zip(users, items, ["view"] * len(users), [None] * len(users), ts, strict=True))
    art = train_artifact(inter, TrainConfig(factors=128, reg=200.0, device="cpu"), version=1)
    rec = TrainedModel(art)
    assert np.array_equal(inter.item_ids, split.item_ids) and np.array_equal(inter.user_ids, split.user_ids)
    rows = np.flatnonzero(np.diff(split.test.indptr) > 0)
    history_order = {}
    for row in rows:
        start, end = split.train_ts.indptr[row], split.train_ts.indptr[row + 1]
        order = np.argsort(split.train_ts.data[start:end], kind="stable")
        history_order[row] = split.item_ids[split.train_ts.indices[start:end][order]].tolist()
    known = [rec.user_vector(str(split.user_ids[r])) for r in rows]
    assert all(v is not None for v in known)
    trained = np.vstack([v for v in known if v is not None])
    histories = [rec.fold_in([(item, 1.0) for item in history_order[r]]) for r in rows]
    assert all(v is not None for v in histories)
    folded = np.vstack([v for v in histories if v is not None])
    item_emb = art.item_embeddings

    def ndcg(vectors: np.ndarray) -> float:
        lookup = dict(zip(rows.tolist(), range(len(rows)), strict=True))
        top = top_k(lambda r: vectors[[lookup[x] for x in r]] @ item_emb.T, split.train, rows, 20)
        return summarize(top, split.test[rows])["ndcg@10"]

    trained_ndcg, folded_ndcg = ndcg(trained), ndcg(folded)
    assert trained_ndcg > 0.05
    assert abs(folded_ndcg - trained_ndcg) <= 0.1 * trained_ndcg


def test_data_dir_constant_points_at_shared() -> None:
    assert DEFAULT_DATA_DIR.parts[-2:] == ("shared", "data")
    assert isinstance(DEFAULT_DATA_DIR, Path)
