"""Ranking figures of the cold-start benchmark: cold items ranked among cold items only, warm items among
warm items (a user's training items excluded) or among warm and cold items together, all through
``tooling.offline.evaluation.top_k`` and ``model.metrics``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from model.metrics import per_user_at_k, summarize
from tooling.bench.cold_start_split import ColdSplit
from tooling.offline.evaluation import top_k

ScoreFn = Callable[[np.ndarray], np.ndarray]
COLD_K = 20
WARM_K = 10


@dataclass(frozen=True)
class Figures:
    users: int  # users with at least one test item
    metrics: dict[str, float]
    per_user_ndcg: np.ndarray  # NDCG@k per evaluated user, in row order


def _evaluate(score_fn: ScoreFn, exclude: sp.csr_matrix, test: sp.csr_matrix, k: int) -> Figures:
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    if len(rows) == 0:
        return Figures(0, {f"recall@{k}": 0.0, f"ndcg@{k}": 0.0}, np.zeros(0))
    top = top_k(score_fn, exclude, rows, k)
    if top.shape[1] < k:  # fewer candidates than k: the empty ranks are misses
        top = np.hstack([top, np.full((len(rows), k - top.shape[1]), -1, dtype=top.dtype)])
    sub = test[rows]
    metrics = summarize(top, sub, ks=(k,))
    return Figures(len(rows), metrics, per_user_at_k(top, sub, k)[f"ndcg@{k}"])


def cold_figures(score_fn: ScoreFn, split: ColdSplit, k: int = COLD_K) -> Figures:
    """Every cold item is a candidate; none is in any user's training, so nothing is excluded."""
    nothing = sp.csr_matrix(split.cold_test.shape, dtype=np.float32)
    return _evaluate(score_fn, nothing, split.cold_test, k)


def warm_figures(score_fn: ScoreFn, split: ColdSplit, k: int = WARM_K) -> Figures:
    return _evaluate(score_fn, split.train, split.warm_test, k)


def served_warm_figures(score_fn: ScoreFn, split: ColdSplit, k: int = WARM_K) -> Figures:
    """Warm test items ranked among the training items (a user's own excluded) plus every cold item,
    ``score_fn`` giving warm columns then cold ones: the list serving shows once new items compete."""
    exclude, cold_part = _served_exclude(split)
    return _evaluate(score_fn, exclude, sp.hstack([split.warm_test, cold_part], format="csr"), k)


def served_all_figures(score_fn: ScoreFn, split: ColdSplit, k: int = WARM_K) -> Figures:
    """Every test item, warm or cold, ranked among the training items (a user's own excluded) plus every
    cold item (``score_fn``: warm columns then cold ones): whether the whole list serving shows is
    better with new items in it. A ``score_fn`` that gives cold items ``-inf`` is the list without them."""
    exclude, _ = _served_exclude(split)
    return _evaluate(score_fn, exclude, sp.hstack([split.warm_test, split.cold_test], format="csr"), k)


def _served_exclude(split: ColdSplit) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Warm then cold columns: each user's training items excluded, no cold item (and the empty cold part)."""
    cold_part = sp.csr_matrix((split.n_users, len(split.cold_ids)), dtype=np.float32)
    return sp.hstack([split.train, cold_part], format="csr"), cold_part
