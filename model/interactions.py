"""Events -> a weighted users x items CSR matrix with id maps.

Each event contributes its weight (``core.event_weights``: its type's weight, ``rate`` contributes
``weight * value``), optionally decayed by age with a half-life; repeated (user, item) pairs add up, and
the sum is weighed by ``ModelSettings.input_weighting`` (``model.history_weighting``). Each pair keeps
the timestamp ``ModelSettings.history_order`` names (its latest or first event) for the recency order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from core.event_weights import event_weight
from core.settings import EventWeights
from model.errors import EmptyDataError
from model.history_weighting import DEFAULT_ORDER, DEFAULT_WEIGHTING, check_order, weigh_pairs

logger = logging.getLogger(__name__)

# The settings' defaults, as a mapping (the offline protocol's input weights read it).
DEFAULT_EVENT_WEIGHTS: dict[str, float] = EventWeights().model_dump()
DAY_MS = 86_400_000

Event = tuple[str, str, str, float | None, int]  # user_id, item_id, event_type, value, ts_ms


@dataclass(frozen=True)
class Interactions:
    matrix: sp.csr_matrix  # users x items, float32 weights
    user_ids: np.ndarray  # numpy unicode, row order
    item_ids: np.ndarray  # numpy unicode, column order
    # Same sparsity as matrix: the epoch ms of each pair that orders the history for recency: its
    # latest event (history_order "latest", the name's origin) or its first ("first").
    last_ts: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def recency_ranks(self) -> sp.csr_matrix:
        """Per user, 0 for the most recently touched item, 1 for the one before, ..."""
        return recency_ranks(self.last_ts)


def recency_ranks(ts: sp.csr_matrix) -> sp.csr_matrix:
    """Per row of a timestamp matrix, 0 for the newest entry, 1 for the one before, ... (same sparsity)."""
    ranks = np.empty(ts.nnz, dtype=np.float32)
    for row in range(ts.shape[0]):
        start, end = ts.indptr[row], ts.indptr[row + 1]
        order = np.argsort(-ts.data[start:end], kind="stable")
        r = np.empty(end - start, dtype=np.float32)
        r[order] = np.arange(end - start, dtype=np.float32)
        ranks[start:end] = r
    return sp.csr_matrix((ranks, ts.indices.copy(), ts.indptr.copy()), shape=ts.shape)


def build_interactions(
    events: Iterable[Event],
    weights: EventWeights | None = None,
    half_life_days: float | None = None,
    now_ms: int | None = None,
    weighting: str = DEFAULT_WEIGHTING,
    order: str = DEFAULT_ORDER,
) -> Interactions:
    """Events weigh ``core.event_weights.event_weight`` (default weights: the settings' defaults); unknown
    event types and non-positive weights are skipped (a 1-star rating still counts if rate>0)."""
    w = EventWeights() if weights is None else weights
    users: list[str] = []
    items: list[str] = []
    vals: list[float] = []
    stamps: list[int] = []
    for user_id, item_id, event_type, value, ts_ms in events:
        users.append(user_id)
        items.append(item_id)
        vals.append(event_weight(event_type, value, w))
        stamps.append(int(ts_ms))
    return interactions_from_arrays(
        np.asarray(users, dtype=str),
        np.asarray(items, dtype=str),
        np.asarray(vals, dtype=np.float64),
        np.asarray(stamps, dtype=np.int64),
        half_life_days=half_life_days,
        now_ms=now_ms,
        weighting=weighting,
        order=order,
    )


def interactions_from_arrays(
    users: np.ndarray,
    items: np.ndarray,
    event_weights: np.ndarray,
    ts_ms: np.ndarray,
    half_life_days: float | None = None,
    now_ms: int | None = None,
    weighting: str = DEFAULT_WEIGHTING,
    order: str = DEFAULT_ORDER,
) -> Interactions:
    """``build_interactions`` over parallel arrays of already weighed events (what retrain hands in: a
    few million events cost no Python call each); non-finite and non-positive weights are skipped."""
    keep = np.isfinite(event_weights) & (event_weights > 0)
    if not keep.any():
        raise EmptyDataError("no events with a positive weight")
    all_kept = bool(keep.all())
    ts = np.asarray(ts_ms if all_kept else ts_ms[keep], dtype=np.int64)
    w_arr = np.asarray(event_weights if all_kept else event_weights[keep], dtype=np.float64)
    if half_life_days is not None and half_life_days > 0:
        ref = int(ts.max()) if now_ms is None else now_ms
        age_days = np.maximum(ref - ts, 0) / DAY_MS
        w_arr = w_arr * 0.5 ** (age_days / half_life_days)
    user_ids, u_idx = np.unique(users if all_kept else users[keep], return_inverse=True)
    item_ids, i_idx = np.unique(items if all_kept else items[keep], return_inverse=True)
    u_idx, i_idx = u_idx.reshape(-1), i_idx.reshape(-1)
    shape = (len(user_ids), len(item_ids))
    matrix = sp.csr_matrix((w_arr.astype(np.float32), (u_idx, i_idx)), shape=shape)
    matrix.sum_duplicates()
    matrix.data = weigh_pairs(matrix.data, weighting)
    # One timestamp per pair: sorted by (pair, time), the latest is each pair's last row, the first its
    # first row; taken via COO->CSR on unique keys.
    key = u_idx.astype(np.int64) * shape[1] + i_idx
    by_time = np.lexsort((ts, key))
    pick = np.ones(len(by_time), dtype=bool)
    if check_order(order) == "latest":
        pick[:-1] = key[by_time][1:] != key[by_time][:-1]
    else:
        pick[1:] = key[by_time][1:] != key[by_time][:-1]
    sel = by_time[pick]
    last_ts = sp.csr_matrix((ts[sel].astype(np.float64) + 1.0, (u_idx[sel], i_idx[sel])), shape=shape)
    last_ts.sort_indices()
    matrix.sort_indices()
    last_ts.data -= 1.0  # stored +1 so a 0 ms timestamp is not an implicit zero
    logger.info("interactions_built users=%d items=%d pairs=%d", shape[0], shape[1], matrix.nnz)
    return Interactions(matrix=matrix, user_ids=user_ids, item_ids=item_ids, last_ts=last_ts)
