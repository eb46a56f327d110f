"""Ranking metrics over a top-K matrix, vectorised across users.

Recall@K divides by min(K, |test|) so a user with fewer than K test items can still reach 1.0.
NDCG is binary (every test item has gain 1) and HR@K is 1 when any test item is in the top K.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hit_matrix(top_items: np.ndarray, test: sp.csr_matrix) -> np.ndarray:
    """Boolean (n_users, K): whether the item at each rank is in that user's test set."""
    if top_items.shape[0] != test.shape[0]:
        raise ValueError(f"top_items has {top_items.shape[0]} rows but test has {test.shape[0]}")
    hits = np.zeros(top_items.shape, dtype=bool)
    for row in range(top_items.shape[0]):
        start, end = test.indptr[row], test.indptr[row + 1]
        if end > start:
            hits[row] = np.isin(top_items[row], test.indices[start:end])
    return hits


def _test_sizes(test: sp.csr_matrix) -> np.ndarray:
    return np.diff(test.indptr).astype(np.float64)


def recall_at_k(hits: np.ndarray, n_test: np.ndarray, k: int) -> np.ndarray:
    denom = np.minimum(k, n_test)
    return np.divide(hits[:, :k].sum(axis=1), denom, out=np.zeros(len(denom)), where=denom > 0)


def ndcg_at_k(hits: np.ndarray, n_test: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = ideal_cum[np.minimum(k, n_test).astype(int)]
    out: np.ndarray = np.divide(dcg, idcg, out=np.zeros(len(idcg)), where=idcg > 0)
    return out


def hr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(hits[:, :k].any(axis=1), dtype=np.float64)


def summarize(top_items: np.ndarray, test: sp.csr_matrix, ks: tuple[int, ...] = (10, 20)) -> dict[str, float]:
    """Mean recall/ndcg/hr at each K over users that have at least one test item."""
    n_test = _test_sizes(test)
    mask = n_test > 0
    hits = hit_matrix(top_items[mask], test[mask])
    n = n_test[mask]
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = float(recall_at_k(hits, n, k).mean()) if len(n) else 0.0
        out[f"ndcg@{k}"] = float(ndcg_at_k(hits, n, k).mean()) if len(n) else 0.0
        out[f"hr@{k}"] = float(hr_at_k(hits, k).mean()) if len(n) else 0.0
    return out


def curves(top_items: np.ndarray, test: sp.csr_matrix, max_k: int = 50) -> dict[str, list[float]]:
    """Recall@K and NDCG@K for K = 1..max_k (for plots)."""
    n_test = _test_sizes(test)
    mask = n_test > 0
    hits = hit_matrix(top_items[mask, :max_k], test[mask])
    n = n_test[mask]
    return {
        "recall": [float(recall_at_k(hits, n, k).mean()) for k in range(1, max_k + 1)],
        "ndcg": [float(ndcg_at_k(hits, n, k).mean()) for k in range(1, max_k + 1)],
    }


def per_user_at_k(top_items: np.ndarray, test: sp.csr_matrix, k: int = 10) -> dict[str, np.ndarray]:
    """NDCG/Recall/HR@k of each user with at least one test item, in row order (for paired comparisons)."""
    n_test = _test_sizes(test)
    mask = n_test > 0
    hits = hit_matrix(top_items[mask, :k], test[mask])
    n = n_test[mask]
    return {
        f"ndcg@{k}": ndcg_at_k(hits, n, k),
        f"recall@{k}": recall_at_k(hits, n, k),
        f"hr@{k}": hr_at_k(hits, k),
    }


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over users and its percentile bootstrap interval at ``level``.

    ``a`` and ``b`` are two models' per-user figures on the same users in the same order; resampling
    users (not each model separately) keeps the pairing, so what two models share (a hard user is hard for
    both) does not widen the interval. A fixed seed makes the demo's output reproducible.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired figures need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    diff = a - b
    if len(diff) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    # Chunks bound the index matrix's memory (resamples x users) on large evaluations.
    step = max(1, 2_000_000 // len(diff))
    for start in range(0, resamples, step):
        n = min(step, resamples - start)
        means[start : start + n] = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(lo), float(hi)
