"""The cold-start split: the newest items become cold, every interaction with them leaves training.

1. Pairs are merged keeping their first timestamp (as ``tooling.offline.split`` does).
2. Items are ordered by their first interaction; the test period starts at the first interaction of the
   newest ``cold_fraction`` of them, and every item first seen after that moment is *cold*: all its
   interactions are held out of training, and its catalog metadata is all a model knows of it. (A cutoff
   on items, not on events: on MovieLens almost every event of the last 20% of time is on an old film,
   which would leave a few dozen cold items.)
3. Warm items: per user with at least ``min_items`` warm items, the last ``ceil(test_fraction)`` of them
   by time are the warm test (for the warm NDCG@10 with and without content); the rest is training.
   Warm test items that nobody has in training are dropped, as in the quality protocol.
4. Users with at least one training item are the rows; a user's cold test is every cold item they
   interacted with, ranked among all cold items.

``validation()`` applies the same protocol to the training pairs alone, for tuning. ``earlier()`` is a
fresh split one step back in time (``--holdout-shift``): see there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from model.errors import EmptyDataError
from model.interactions import recency_ranks
from tooling.offline.split import dedup_first


@dataclass(frozen=True)
class ColdSplit:
    user_ids: np.ndarray  # rows: users with at least one training item
    warm_ids: np.ndarray  # columns of train / train_ts / warm_test: items in training
    cold_ids: np.ndarray  # columns of cold_test: every cold item (the candidates)
    train: sp.csr_matrix  # binary users x warm items
    train_ts: sp.csr_matrix  # first timestamp of each training pair, same sparsity
    warm_test: sp.csr_matrix  # binary users x warm items
    cold_test: sp.csr_matrix  # binary users x cold items
    cutoff_ms: int  # cold items' first interaction is after this
    ends_ms: int | None = None  # a shifted split's events are at or before this (``earlier``)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def recency_ranks(self) -> sp.csr_matrix:
        return recency_ranks(self.train_ts)

    def validation(self, cold_fraction: float = 0.2, test_fraction: float = 0.2) -> ColdSplit:
        """The same protocol inside the training pairs (their cold items are the newest warm ones)."""
        coo = self.train_ts.tocoo()
        return cold_split(
            self.user_ids[coo.row],
            self.warm_ids[coo.col],
            coo.data.astype(np.int64),
            cold_fraction=cold_fraction,
            test_fraction=test_fraction,
        )

    def earlier(self, cold_fraction: float = 0.2, test_fraction: float = 0.2) -> ColdSplit:
        """A fresh split whose test period ends where this one's begins (``--holdout-shift``).

        Every held-out pair leaves (cold items' and warm test pairs: test figures may have been read on
        them), and so does every training pair after the cutoff (the test period's events); the same cut
        is then made inside what is left. So the new cold items are those first seen (among the pairs left)
        in the window before this split's cutoff, and no pair of the new split was a test pair of this one.
        """
        coo = self.train_ts.tocoo()
        before = coo.data <= self.cutoff_ms
        split = cold_split(
            self.user_ids[coo.row[before]],
            self.warm_ids[coo.col[before]],
            coo.data[before].astype(np.int64),
            cold_fraction=cold_fraction,
            test_fraction=test_fraction,
        )
        return replace(split, ends_ms=self.cutoff_ms)

    def stats(self) -> dict[str, int]:
        cold_users = int((np.diff(self.cold_test.indptr) > 0).sum())
        ends = {} if self.ends_ms is None else {"ends_ms": self.ends_ms}
        return {
            "users": self.n_users,
            "warm_items": len(self.warm_ids),
            "cold_items": len(self.cold_ids),
            "cold_items_with_test_pairs": int((np.diff(self.cold_test.tocsc().indptr) > 0).sum()),
            "train_pairs": int(self.train.nnz),
            "warm_test_pairs": int(self.warm_test.nnz),
            "cold_test_pairs": int(self.cold_test.nnz),
            "cold_test_users": cold_users,
            "cutoff_ms": self.cutoff_ms,
            **ends,
        }


def shifted_cold_split(users: np.ndarray, items: np.ndarray, ts: np.ndarray, shift: int) -> ColdSplit:
    """The cold split of the events, moved ``shift`` periods earlier by ``ColdSplit.earlier``."""
    split = cold_split(users, items, ts)
    for _ in range(shift):
        split = split.earlier()
    return split


def _matrix(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((values, (rows, cols)), shape=shape)
    m.sort_indices()
    return m


def cold_split(
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    cold_fraction: float = 0.2,
    test_fraction: float = 0.2,
    min_items: int = 5,
) -> ColdSplit:
    users = np.asarray(users).astype(str)
    items = np.asarray(items).astype(str)
    u, i, t = dedup_first(users, items, np.asarray(ts, dtype=np.int64))
    item_ids, i_idx = np.unique(i, return_inverse=True)
    first = np.full(len(item_ids), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, i_idx, t)
    n_cold = math.ceil(cold_fraction * len(item_ids))
    if n_cold == 0 or n_cold >= len(item_ids):
        raise EmptyDataError(f"{len(item_ids)} items cannot be split into warm and {cold_fraction:.0%} cold")
    cutoff = int(np.sort(first)[len(item_ids) - n_cold - 1])
    # Strictly after the cutoff: items first seen at the same moment as the last warm one stay warm.
    is_cold_item = first > cutoff
    if not is_cold_item.any():
        raise EmptyDataError("every item is first seen at the cutoff: nothing is cold")
    cold_pair = is_cold_item[i_idx]

    # Warm pairs: per user with >= min_items of them, the newest ceil(test_fraction) are warm test.
    wu, wi, wt = u[~cold_pair], i[~cold_pair], t[~cold_pair]
    order = np.lexsort((wi, wt, wu))
    wu, wi, wt = wu[order], wi[order], wt[order]
    _, w_uidx, w_counts = np.unique(wu, return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(w_counts)[:-1]])
    rank = np.arange(len(wu)) - starts[w_uidx]
    n_test = np.where(w_counts >= min_items, np.ceil(test_fraction * w_counts).astype(np.int64), 0)
    is_test = rank >= (w_counts - n_test)[w_uidx]

    user_ids = np.unique(wu[~is_test])
    warm_ids = np.unique(wi[~is_test])
    if len(user_ids) == 0 or len(warm_ids) == 0:
        raise EmptyDataError("no training pairs are left after holding out the cold items")
    cold_ids = item_ids[is_cold_item]
    shape = (len(user_ids), len(warm_ids))

    tr_rows = np.searchsorted(user_ids, wu[~is_test])
    tr_cols = np.searchsorted(warm_ids, wi[~is_test])
    train_ts = _matrix(tr_rows, tr_cols, wt[~is_test].astype(np.float64), shape)
    train = sp.csr_matrix((np.ones(train_ts.nnz, np.float32), train_ts.indices, train_ts.indptr), shape=shape)

    te_u, te_i = wu[is_test], wi[is_test]
    keep = _members(te_u, user_ids) & _members(te_i, warm_ids)
    warm_test = _matrix(
        np.searchsorted(user_ids, te_u[keep]),
        np.searchsorted(warm_ids, te_i[keep]),
        np.ones(int(keep.sum()), np.float32),
        shape,
    )

    cu, ci = u[cold_pair], i[cold_pair]
    keep = _members(cu, user_ids)
    cold_test = _matrix(
        np.searchsorted(user_ids, cu[keep]),
        np.searchsorted(cold_ids, ci[keep]),
        np.ones(int(keep.sum()), np.float32),
        (len(user_ids), len(cold_ids)),
    )
    return ColdSplit(user_ids, warm_ids, cold_ids, train, train_ts, warm_test, cold_test, cutoff)


def _members(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return np.asarray(sorted_ids[pos] == values)
