"""Recall of an approximate inner-product search against exact search, as serving uses the results.

Two things make a plain id overlap of the top k mislead on real storefront logs:
- **Ties.** Items seen by the same single shopper share one embedding, and sparse logs have
  thousands of them. Exact search returns some of the tied items, an exhaustive IVF search others,
  and an id overlap counts the difference as misses: on the Taobao sample calibration read recall@50
  0.93 at nprobe = nlist, never reached its 0.95 target and published a full scan. Here every item
  scoring above the exact k-th score must be found itself and the remaining places may go to any item
  tied with the k-th score.
- **Exclusions.** Serving fetches k + the shopper's excluded items and drops those, so the list a
  shopper sees comes from deeper than k. On the same sample a top-50 recall of 0.958 (the unfiltered
  top 50 is mostly the shopper's own items) came with a served NDCG@10 a third below exact search.
  Calibrating with each query's seen items measures the list that is shown.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import faiss
import numpy as np

logger = logging.getLogger(__name__)

# Scores within this fraction of a query's best score count as equal: a 513-dim float32 inner product
# computed by two kernels (BLAS for exact search, FAISS's own for IVF and HNSW) differs by ~1e-6 of it.
TIE_RTOL = 1e-5
# Calibration keeps a margin of this many standard errors of its mean recall (see _reaches).
CALIBRATION_Z = 2.0


class ExactTopK:
    """Exact top-k ids and scores of each query (ids below 0 are padding when k exceeds the items)."""

    def __init__(self, scores: np.ndarray, ids: np.ndarray) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)
        self.ids = np.asarray(ids)

    @property
    def k(self) -> int:
        return int(self.ids.shape[1])


def exact_search(items: np.ndarray, queries: np.ndarray, k: int) -> ExactTopK:
    scores, ids = faiss.knn(queries, items, k, metric=faiss.METRIC_INNER_PRODUCT)
    return ExactTopK(scores, ids)


def per_query_recall(found_scores: np.ndarray, found_ids: np.ndarray, truth: ExactTopK) -> np.ndarray:
    """For each query, the share of its exact top-k that the search found. Every item scoring above
    the exact k-th score must be found itself; the places left go to items tied with the k-th score
    (within ``TIE_RTOL`` of the best score), any of which is as good as another. A tied item never
    stands in for a missed higher one."""
    valid_truth = truth.ids >= 0
    n_truth = valid_truth.sum(axis=1)
    wanted = np.maximum(n_truth, 1)
    kth = truth.scores[np.arange(len(n_truth)), np.maximum(n_truth - 1, 0)]
    tol = (TIE_RTOL * np.maximum(np.abs(truth.scores[:, 0]), np.abs(kth)))[:, None]
    above = kth[:, None] + tol
    must = (valid_truth & (truth.scores > above)).sum(axis=1)
    ids = np.asarray(found_ids)
    scores = np.asarray(found_scores)
    found = ids >= 0
    # Above the k-th score, a found item counts only if exact search has it (guards against a search
    # reporting a score it did not compute exactly).
    higher = found & (scores > above) & (ids[:, :, None] == truth.ids[:, None, :]).any(axis=2)
    tied = found & (scores >= kth[:, None] - tol) & (scores <= above)
    hits = higher.sum(axis=1) + np.minimum(tied.sum(axis=1), wanted - must)
    return np.asarray(np.minimum(hits, wanted) / wanted, dtype=np.float64)


def index_recall(index: faiss.Index, items: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Recall@k of ``index`` (as it is, at its current search effort) against exact search."""
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(k, len(items)))
    truth = exact_search(np.ascontiguousarray(items, dtype=np.float32), q, k)
    scores, found = index.search(q, k)
    return float(per_query_recall(scores, found, truth).mean())


# Calibrating with exclusions searches this much deeper than k at most: a shopper with more seen items
# than this keeps the unseen items among the top k + MAX_EXCLUDED (so fewer than k may remain).
MAX_EXCLUDED = 2000


def search_depth(k: int, seen: Sequence[np.ndarray] | None, n_items: int) -> int:
    """How deep to search so that ``k`` results remain after each query's exclusions (as serving
    fetches k + the excluded items)."""
    extra = max((len(s) for s in seen), default=0) if seen is not None else 0
    return max(1, min(n_items, k + min(extra, MAX_EXCLUDED)))


def served_lists(
    scores: np.ndarray, ids: np.ndarray, seen: Sequence[np.ndarray] | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's first ``k`` results once its ``seen`` item rows are left out, as serving's
    ``exclude_seen`` leaves them out; short lists are padded with id -1 and score -inf."""
    if seen is None:
        return scores[:, :k], ids[:, :k]
    out_scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
    out_ids = np.full((len(ids), k), -1, dtype=np.int64)
    for q, excluded in enumerate(seen):
        keep = (ids[q] >= 0) & ~np.isin(ids[q], excluded)
        kept_ids, kept_scores = ids[q][keep][:k], scores[q][keep][:k]
        out_ids[q, : len(kept_ids)] = kept_ids
        out_scores[q, : len(kept_ids)] = kept_scores
    return out_scores, out_ids


Measured = tuple[int, float]  # (search effort, mean recall@k on the calibration queries)


def calibrate(
    index: faiss.Index,
    queries: np.ndarray,
    truth: ExactTopK,
    target: float,
    ladder: tuple[int, int],
    served: tuple[int, Sequence[np.ndarray] | None],
    set_effort: Callable[[faiss.Index, int], None],
) -> Measured:
    """Smallest effort in [low, high] whose recall@k reaches ``target`` (``high`` if none does).

    Recall is monotone in IVF nprobe (the probed lists only grow) and nearly so in HNSW efSearch, so
    doubling then bisecting finds it in O(log high) searches. A target of 1 asks for exact results,
    which only the exhaustive effort guarantees beyond the calibration queries."""
    low, high = ladder
    k = truth.k

    def measure(effort: int) -> tuple[Measured, bool]:
        set_effort(index, effort)
        scores, found = served_lists(*index.search(queries, served[0]), served[1], k)
        per_query = per_query_recall(scores, found, truth)
        return (effort, float(per_query.mean())), _reaches(per_query, target)

    if target >= 1.0:
        return measure(high)[0]
    passing, failing = _doubling(low, high, measure)
    if passing is None:
        logger.warning("ann_target_not_reached target=%.3f effort=%d recall=%.4f", target, *failing)
        return failing
    lo = failing[0]
    while passing[0] - lo > 1:
        mid = (lo + passing[0]) // 2
        measured, ok = measure(mid)
        if ok:
            passing = measured
        else:
            lo = mid
    return passing


def _reaches(per_query: np.ndarray, target: float) -> bool:
    """The mean must clear the target by two standard errors: the effort is chosen on these queries,
    and should reach the target on other queries from the same distribution too."""
    spread = float(per_query.std(ddof=1)) / math.sqrt(len(per_query)) if len(per_query) > 1 else 0.0
    return float(per_query.mean()) - CALIBRATION_Z * spread >= target


def _doubling(
    low: int, high: int, measure: Callable[[int], tuple[Measured, bool]]
) -> tuple[Measured | None, Measured]:
    """(first passing or None, last failing) of efforts low, 2 low, 4 low, ..., high."""
    failing: Measured = (low - 1, 0.0)
    effort = max(1, low)
    while True:
        measured, ok = measure(effort)
        if ok:
            return measured, failing
        failing = measured
        if effort >= high:
            return None, failing
        effort = min(2 * effort, high)
