"""Full-ranking evaluation: every training item is a candidate except the user's own training items."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from model.metrics import curves, hit_matrix, per_user_at_k, summarize

# Given user row indices, return dense scores (len(rows), n_items).
ScoreFn = Callable[[np.ndarray], np.ndarray]


def top_k(score_fn: ScoreFn, train: sp.csr_matrix, rows: np.ndarray, k: int, batch: int = 512) -> np.ndarray:
    n_items = train.shape[1]
    k = min(k, n_items)
    out = np.empty((len(rows), k), dtype=np.int64)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        scores = np.asarray(score_fn(chunk))
        if scores.dtype not in (np.float32, np.float64):
            scores = scores.astype(np.float64)  # float32 stays: same order, half the memory traffic
        if scores.shape != (len(chunk), n_items):
            raise ValueError(f"score_fn returned {scores.shape}, expected {(len(chunk), n_items)}")
        seen = train[chunk]
        scores[seen.nonzero()] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        out[start : start + len(chunk)] = np.take_along_axis(part, order, axis=1)
    return out


def evaluate(
    score_fn: ScoreFn, train: sp.csr_matrix, test: sp.csr_matrix, k_max: int = 50, with_curves: bool = False
) -> tuple[dict[str, float], dict[str, list[float]] | None]:
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    top = top_k(score_fn, train, rows, k_max)
    sub_test = test[rows]
    metrics = summarize(top, sub_test)
    return metrics, (curves(top, sub_test, k_max) if with_curves else None)


@dataclass(frozen=True)
class UserEvaluation:
    """One model's figures on a split, kept per user so two models can be compared pairwise."""

    users: int  # users with at least one test item: the evaluated ones
    metrics: dict[str, float]  # means, as ``evaluate`` returns them
    per_user: dict[str, np.ndarray]  # metric@k per evaluated user, in the split's row order
    curves: dict[str, list[float]]  # recall and ndcg at K = 1..k_max
    hits: int = 0  # test items found in the top k, summed over users (what a margin is made of)


def evaluate_users(
    score_fn: ScoreFn, train: sp.csr_matrix, test: sp.csr_matrix, k: int = 10, k_max: int = 50
) -> UserEvaluation:
    """``evaluate`` with curves, plus each user's NDCG/Recall/HR@k from the same top-k_max ranking."""
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    return evaluate_top(top_k(score_fn, train, rows, max(k, k_max)), test, k, k_max)


def evaluate_top(top: np.ndarray, test: sp.csr_matrix, k: int = 10, k_max: int = 50) -> UserEvaluation:
    """``evaluate_users`` of a ranking already made (one row per user with test items, in row order;
    -1 marks an empty rank), e.g. by an approximate index."""
    rows = np.flatnonzero(np.diff(test.indptr) > 0)
    if top.shape[1] < max(k, k_max):
        # A catalog smaller than K: the empty ranks are misses (-1 is never a test item).
        pad = np.full((top.shape[0], max(k, k_max) - top.shape[1]), -1, dtype=top.dtype)
        top = np.hstack([top, pad])
    sub_test = test[rows]
    return UserEvaluation(
        users=len(rows),
        metrics=summarize(top, sub_test),
        per_user=per_user_at_k(top, sub_test, k),
        curves=curves(top, sub_test, k_max),
        hits=int(hit_matrix(top[:, :k], sub_test).sum()),
    )
