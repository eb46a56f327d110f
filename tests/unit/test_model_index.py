import numpy as np

from model.index import ann_recall, build_index, search


def test_hnsw_recall_vs_exact_on_synthetic_embeddings() -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(5000, 32)).astype(np.float32)
    queries = rng.normal(size=(200, 32)).astype(np.float32)
    assert ann_recall(items, queries, k=20, hnsw_m=32, ef_search=128) >= 0.95


def test_exact_below_threshold_and_hnsw_above() -> None:
    items = np.random.default_rng(1).normal(size=(50, 8)).astype(np.float32)
    exact = build_index(items, exact_max_items=100)
    approx = build_index(items, exact_max_items=10)
    assert type(exact).__name__ == "IndexFlatIP"
    assert type(approx).__name__ == "IndexHNSWFlat"
    scores, ids = search(exact, items[:1], 5)
    expected = np.argsort(-(items @ items[0]))[:5]
    assert ids[0].tolist() == expected.tolist()
    assert np.isclose(scores[0][0], float(items[expected[0]] @ items[0]), rtol=1e-5)
