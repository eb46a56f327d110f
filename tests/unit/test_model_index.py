from typing import Any

import faiss
import numpy as np
import pytest

from model.ann_recall import exact_search, per_query_recall
from model.artifact import ModelArtifact
from model.index import (
    AnnParams,
    ann_recall,
    build_index,
    index_recall,
    search,
    search_effort,
    set_search_effort,
    stored_search_effort,
    unit_rows,
)
from model.trained_model import TrainedModel


@pytest.fixture(scope="module")
def gaussian() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """20k unclustered items (no easy cells for IVF); disjoint calibration and held-out queries."""
    rng = np.random.default_rng(0)
    items = rng.normal(size=(20_000, 32)).astype(np.float32)
    queries = unit_rows(rng.normal(size=(1500, 32)))
    return items, queries[:1000], queries[1000:]


def test_exact_below_threshold_and_hnsw_above_by_default() -> None:
    items = np.random.default_rng(1).normal(size=(2000, 8)).astype(np.float32)
    exact, exact_report = build_index(items, exact_max_items=2000)
    graph, graph_report = build_index(items, exact_max_items=1999)
    assert type(exact).__name__ == "IndexFlatIP" and exact_report.kind == "exact"
    assert type(graph).__name__ == "IndexHNSWFlat" and graph_report.kind == "hnsw"
    assert graph_report.search_effort == search_effort(graph) and (graph_report.search_effort or 0) >= 50
    approx, report = build_index(items, exact_max_items=1999, params=AnnParams(kind="ivf"))
    assert type(approx).__name__ == "IndexIVFFlat" and report.kind == "ivf"
    assert report.search_effort == search_effort(approx) and 1 <= (report.search_effort or 0) <= (
        report.nlist or 0
    )
    scores, ids = search(exact, items[:1], 5)
    expected = np.argsort(-(items @ items[0]))[:5]
    assert ids[0].tolist() == expected.tolist()
    assert np.isclose(scores[0][0], float(items[expected[0]] @ items[0]), rtol=1e-5)


def test_ivf_calibration_reaches_the_target_on_held_out_queries(gaussian: tuple) -> None:
    items, calibration, held_out = gaussian
    index, report = build_index(
        items,
        exact_max_items=0,
        params=AnnParams(kind="ivf", target_recall=0.9),
        calibration_queries=calibration,
    )
    assert report.kind == "ivf" and report.calibration_queries == len(calibration)
    assert report.recall_at_k is not None and report.recall_at_k >= 0.9
    assert index_recall(index, items, held_out, k=50) >= 0.9
    # The smallest effort that reaches the target (with calibration's two-standard-error margin, well
    # under 0.01 here): one probe fewer falls short.
    nprobe = search_effort(index) or 0
    assert nprobe == report.search_effort and 1 < nprobe < (report.nlist or 0)
    set_search_effort(index, nprobe - 1)
    assert index_recall(index, items, calibration, k=50) < 0.9 + 0.01


def test_target_one_means_exhaustive_effort(gaussian: tuple) -> None:
    items, calibration, held_out = gaussian
    index, report = build_index(
        items[:5000],
        exact_max_items=0,
        params=AnnParams(kind="ivf", target_recall=1.0),
        calibration_queries=calibration,
    )
    assert search_effort(index) == report.nlist == report.search_effort and report.recall_at_k == 1.0
    assert index_recall(index, items[:5000], held_out, k=50) == 1.0


def test_hnsw_path_calibrates_ef_search(gaussian: tuple) -> None:
    items, calibration, held_out = gaussian
    params = AnnParams(kind="hnsw", target_recall=0.9, hnsw_m=16, hnsw_ef_construction=64, hnsw_ef_search=256)
    index, report = build_index(
        items[:5000], exact_max_items=0, params=params, calibration_queries=calibration
    )
    assert type(index).__name__ == "IndexHNSWFlat" and report.kind == "hnsw"
    assert report.search_effort == search_effort(index) and (report.search_effort or 0) <= 256
    graph: Any = index
    assert graph.hnsw.efConstruction == 64
    assert index_recall(index, items[:5000], held_out, k=50) >= 0.9
    assert ann_recall(items[:5000], held_out, k=20, params=params, calibration_queries=calibration) >= 0.9


def test_invalid_params_rejected() -> None:
    with pytest.raises(ValueError, match="kind"):
        AnnParams(kind="pq")
    with pytest.raises(ValueError, match="target_recall"):
        AnnParams(target_recall=1.5)


def _artifact(items: np.ndarray, users: np.ndarray, index_bytes: bytes, config: dict) -> ModelArtifact:
    n, d = items.shape
    return ModelArtifact(
        version=2,
        item_ids=np.array([f"i{j}" for j in range(n)]),
        user_ids=np.array([f"u{j}" for j in range(len(users))]),
        item_embeddings=items,
        user_embeddings=users,
        input_embeddings=np.zeros((n, d - 1), dtype=np.float32),
        config=config,
        index_bytes=index_bytes,
    )


def test_search_effort_survives_the_artifact_round_trip(gaussian: tuple) -> None:
    items, calibration, _ = gaussian
    index, report = build_index(
        items,
        exact_max_items=0,
        params=AnnParams(kind="ivf", target_recall=0.8),
        calibration_queries=calibration,
    )
    assert report.search_effort is not None and report.search_effort > 1
    config = {"exact_search_max_items": 100, "ann": report.to_config()}
    art = _artifact(items, calibration[:10], bytes(faiss.serialize_index(index).tobytes()), config)
    loaded = ModelArtifact.from_files(art.to_files())
    assert stored_search_effort(loaded.config["ann"]) == ("ivf", report.search_effort)
    rec = TrainedModel(loaded, exact_max_items=100)
    assert rec.index_kind == "ivf" and rec.search_effort == report.search_effort
    # The config's effort wins over whatever the serialized index carried.
    set_search_effort(index, 1)
    stale = _artifact(items, calibration[:10], bytes(faiss.serialize_index(index).tobytes()), config)
    assert TrainedModel(ModelArtifact.from_files(stale.to_files())).search_effort == report.search_effort


def test_index_rebuilt_and_calibrated_when_the_kind_does_not_match() -> None:
    rng = np.random.default_rng(2)
    items = rng.normal(size=(3000, 8)).astype(np.float32)
    users = rng.normal(size=(200, 8)).astype(np.float32)
    flat, _ = build_index(items, exact_max_items=5000)
    art = _artifact(items, users, bytes(faiss.serialize_index(flat).tobytes()), {})
    rec = TrainedModel(art, exact_max_items=100, ann=AnnParams(kind="ivf", target_recall=0.9))
    assert rec.index_kind == "ivf" and rec.search_effort is not None
    assert index_recall(rec.index, items, unit_rows(users), k=50) >= 0.9
    assert TrainedModel(art, exact_max_items=5000).index_kind == "exact"


def test_tied_items_count_as_found_so_calibration_is_not_pushed_to_a_full_scan() -> None:
    """Items sharing one embedding (as items seen by one shopper each do) tie at every query: whichever
    of them a search returns is a correct answer, so exhaustive IVF has recall 1 and calibration stops
    below the full scan."""
    rng = np.random.default_rng(3)
    distinct = rng.normal(size=(60, 16)).astype(np.float32)
    items = np.vstack([np.repeat(distinct, 80, axis=0), rng.normal(size=(2000, 16)).astype(np.float32)])
    items = items[rng.permutation(len(items))]
    queries = unit_rows(rng.normal(size=(600, 16)))
    index, report = build_index(
        items,
        exact_max_items=0,
        params=AnnParams(kind="ivf", target_recall=0.95),
        calibration_queries=queries[:400],
    )
    assert report.recall_at_k is not None and report.recall_at_k >= 0.95
    assert (report.search_effort or 0) < (report.nlist or 0)
    set_search_effort(index, report.nlist or 0)
    assert index_recall(index, items, queries[400:], k=50) == 1.0
    # Returning another of the tied items is no loss (ids alone would say it is); a lower score is.
    truth = exact_search(items, queries[400:401], 50)

    def twin(i: int) -> int:
        others = np.flatnonzero((items == items[i]).all(axis=1) & (np.arange(len(items)) != i))
        return int(others[0]) if len(others) else i

    twins = [twin(int(i)) for i in truth.ids[0]]
    assert twins != truth.ids[0].tolist()
    assert per_query_recall(truth.scores, np.asarray([twins]), truth)[0] == 1.0
    wrong = np.argsort(queries[400] @ items.T)[:50]  # the 50 lowest scores
    worst = (items[wrong] @ queries[400])[None, :]
    assert per_query_recall(worst, wrong[None, :], truth)[0] == 0.0
