import math

import numpy as np
import scipy.sparse as sp

from model.metrics import hit_matrix, hr_at_k, ndcg_at_k, recall_at_k, summarize


def _test_matrix(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    data = [(r, c) for r, cols in enumerate(rows) for c in cols]
    r, c = zip(*data, strict=True)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_hand_computed_metrics() -> None:
    top = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    test = _test_matrix([[2, 4, 9], [0]])
    hits = hit_matrix(top, test)
    assert hits.tolist() == [[False, True, False, True], [False, False, False, False]]
    n = np.array([3.0, 1.0])
    # user 0: 2 hits / min(2, 3) at K=2 -> 1 hit / 2
    assert np.allclose(recall_at_k(hits, n, 2), [0.5, 0.0])
    assert np.allclose(recall_at_k(hits, n, 4), [2 / 3, 0.0])
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert np.allclose(ndcg_at_k(hits, n, 4), [dcg / idcg, 0.0])
    assert np.allclose(hr_at_k(hits, 1), [0.0, 0.0])
    assert np.allclose(hr_at_k(hits, 2), [1.0, 0.0])


def test_recall_denominator_is_min_k_test() -> None:
    top = np.array([[0, 1, 2]])
    test = _test_matrix([[0]], n_items=5)
    hits = hit_matrix(top, test)
    assert recall_at_k(hits, np.array([1.0]), 3)[0] == 1.0
    assert ndcg_at_k(hits, np.array([1.0]), 3)[0] == 1.0


def test_summarize_skips_users_without_test_items() -> None:
    top = np.array([[0, 1], [0, 1]])
    test = sp.csr_matrix((np.ones(1), ([0], [1])), shape=(2, 3))
    out = summarize(top, test, ks=(1, 2))
    assert out["hr@1"] == 0.0
    assert out["hr@2"] == 1.0
    assert math.isclose(out["ndcg@2"], 1 / math.log2(3))
