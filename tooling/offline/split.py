"""The offline evaluation protocol, shared by the quality benchmark, validation and the retrain gate.

Every event is a positive; repeated user-item pairs keep their first timestamp; users need at least
``min_items`` distinct items; per user the last ``ceil(test_fraction * n)`` items by time are test;
test items never seen in training are dropped (nothing could ever rank them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from model.errors import EmptyDataError
from model.interactions import recency_ranks


@dataclass(frozen=True)
class Split:
    user_ids: np.ndarray  # users that passed the filter, row order of train/test
    item_ids: np.ndarray  # items that occur in training, column order of train/test
    train: sp.csr_matrix  # binary users x items
    train_ts: sp.csr_matrix  # same sparsity as train; first timestamp of each pair
    test: sp.csr_matrix  # binary users x items (training items only)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def train_triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        coo = self.train_ts.tocoo()
        return self.user_ids[coo.row], self.item_ids[coo.col], coo.data.astype(np.int64)

    def validation(self, test_fraction: float = 0.2, min_items: int = 5) -> Split:
        """The same protocol applied inside the training data (for tuning without touching test)."""
        users, items, ts = self.train_triples()
        return temporal_split(users, items, ts, test_fraction=test_fraction, min_items=min_items)

    def recency_ranks(self) -> sp.csr_matrix:
        """Per user, 0 for the most recent training item, 1 for the one before, ... (same sparsity)."""
        return recency_ranks(self.train_ts)


def dedup_first(
    users: np.ndarray, items: np.ndarray, ts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per (user, item), keeping the earliest timestamp."""
    order = np.lexsort((ts, items, users))
    u, i, t = users[order], items[order], ts[order]
    first = np.ones(len(u), dtype=bool)
    first[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    return u[first], i[first], t[first]


def temporal_split(
    users: np.ndarray,
    items: np.ndarray,
    ts: np.ndarray,
    test_fraction: float = 0.2,
    min_items: int = 5,
) -> Split:
    users = np.asarray(users).astype(str)
    items = np.asarray(items).astype(str)
    ts = np.asarray(ts, dtype=np.int64)
    u, i, t = dedup_first(users, items, ts)
    user_ids, u_idx, counts = np.unique(u, return_inverse=True, return_counts=True)
    keep_user = counts >= min_items
    if not keep_user.any():
        raise EmptyDataError(f"no user has at least {min_items} distinct items")
    mask = keep_user[u_idx]
    u_idx, i, t = u_idx[mask], i[mask], t[mask]
    remap = np.cumsum(keep_user) - 1
    u_idx = remap[u_idx]
    user_ids = user_ids[keep_user]
    counts = counts[keep_user]

    # Ties in time are broken by item id so the split never depends on file order.
    order = np.lexsort((i, t, u_idx))
    u_idx, i, t = u_idx[order], i[order], t[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(u_idx)) - starts[u_idx]
    n_test = np.array([math.ceil(test_fraction * c) for c in counts])
    is_test = rank >= (counts - n_test)[u_idx]

    item_ids = np.unique(i[~is_test])
    tr = ~is_test
    tr_cols = np.searchsorted(item_ids, i[tr])
    shape = (len(user_ids), len(item_ids))
    train_ts = sp.csr_matrix((t[tr].astype(np.float64), (u_idx[tr], tr_cols)), shape=shape)
    train_ts.sort_indices()
    train = sp.csr_matrix((np.ones(train_ts.nnz, np.float32), train_ts.indices, train_ts.indptr), shape=shape)

    te_items = i[is_test]
    pos = np.searchsorted(item_ids, te_items)
    pos_clipped = np.minimum(pos, len(item_ids) - 1)
    known = item_ids[pos_clipped] == te_items
    te_rows = u_idx[is_test][known]
    test = sp.csr_matrix((np.ones(len(te_rows), np.float32), (te_rows, pos_clipped[known])), shape=shape)
    test.sort_indices()
    return Split(user_ids=user_ids, item_ids=item_ids, train=train, train_ts=train_ts, test=test)
