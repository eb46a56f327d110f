"""Model *input* weights for the offline protocol's binary training pairs.

The protocol (``tooling.offline.split``) makes every event a positive and keeps one binary pair per
(user, item); the model's input matrix may still say how strongly the user engaged, as production's
``model.interactions.build_interactions`` does: each event adds its type's weight (optionally ``rate``
adds ``weight * value``) and repeats add up. Only events a user made up to their own training cutoff (the
latest first-timestamp among their training pairs) count, so a later purchase of a training item, which
happened in the test period, never leaks into the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from model.interactions import DEFAULT_EVENT_WEIGHTS
from tooling.offline.split import Split

INPUT_MODES = ("binary", "strength", "log")


def event_strengths(
    event_types: np.ndarray, values: np.ndarray | None = None, weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """Per event: its type's weight (unknown types 0); with ``values``, ``rate`` is also multiplied by the
    value (NaN counts 0). Without ``values`` only the kind of engagement and its repeats count, not how
    much a rating liked the item (the protocol counts every rating as a positive)."""
    w_map = dict(DEFAULT_EVENT_WEIGHTS if weights is None else weights)
    types = np.asarray(event_types).astype(str)
    kinds, inverse = np.unique(types, return_inverse=True)
    out = np.array([w_map.get(str(k), 0.0) for k in kinds], dtype=np.float64)[inverse]
    is_rate = types == "rate"
    if values is not None and is_rate.any():
        vals = np.nan_to_num(np.asarray(values, dtype=np.float64)[is_rate], nan=0.0)
        out[is_rate] = out[is_rate] * vals
    out[~np.isfinite(out)] = 0.0
    return out


def pair_strengths(
    split: Split, users: np.ndarray, items: np.ndarray, ts: np.ndarray, strengths: np.ndarray
) -> sp.csr_matrix:
    """Summed event strength of each training pair of ``split`` (same sparsity as ``split.train``).

    A pair whose counted events sum to <= 0 (only unknown types) keeps strength 1: it is still a positive.
    """
    train = split.train_ts
    n_items = split.n_items
    users = np.asarray(users).astype(str)
    items = np.asarray(items).astype(str)
    ts = np.asarray(ts, dtype=np.float64)
    rows = np.searchsorted(split.user_ids, users)
    cols = np.searchsorted(split.item_ids, items)
    known = (rows < split.n_users) & (cols < n_items)
    known[known] &= (split.user_ids[rows[known]] == users[known]) & (
        split.item_ids[cols[known]] == items[known]
    )
    rows, cols, ts, strengths = rows[known], cols[known], ts[known], np.asarray(strengths)[known]

    cutoff = np.full(split.n_users, -np.inf)
    counts = np.diff(train.indptr)
    has = counts > 0
    cutoff[has] = np.maximum.reduceat(train.data, train.indptr[:-1][has])
    in_past = ts <= cutoff[rows]

    pair_keys = np.repeat(np.arange(split.n_users, dtype=np.int64), counts) * n_items + train.indices
    keys = rows[in_past].astype(np.int64) * n_items + cols[in_past]
    pos = np.searchsorted(pair_keys, keys)
    pos_clipped = np.minimum(pos, len(pair_keys) - 1)
    is_pair = pair_keys[pos_clipped] == keys  # events of items that are test (or absent) for this user
    total = np.bincount(
        pos_clipped[is_pair], weights=strengths[in_past][is_pair], minlength=len(pair_keys)
    ).astype(np.float64)
    total[total <= 0] = 1.0
    return sp.csr_matrix(
        (total.astype(np.float32), train.indices.copy(), train.indptr.copy()), shape=train.shape
    )


def input_matrix(split: Split, strength: sp.csr_matrix | None, mode: str) -> sp.csr_matrix:
    """``binary``: the protocol's 0/1 matrix; ``strength``: summed strengths as production trains on;
    ``log``: ``1 + log(strength)``, which keeps a purchase above a view but damps long repeat streaks."""
    if mode == "binary" or strength is None:
        return split.train
    if mode not in INPUT_MODES:
        raise ValueError(f"unknown input mode {mode!r}; expected one of {', '.join(INPUT_MODES)}")
    out = strength.copy()
    if mode == "log":
        out.data = (1.0 + np.log(np.maximum(out.data, 1.0))).astype(np.float32)
    return out
