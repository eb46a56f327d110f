"""streamrec's row through the production path: ``model.pipeline.fit_model`` (what ``streamrec retrain``
runs) on a split's training events with a ``ModelSettings``, scored through its read side.

The split is the protocol's (``tooling.offline.split``); the events handed to the trainer are the raw
events of the split's training pairs that happened up to each user's training cutoff (the latest first
timestamp among their training pairs), so a repeat view of a training item in the test period never
leaks in. Production then weighs them itself (event weights with rating values, input weighting,
history order): nothing in the benchmark re-implements that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from core.event_table import EventTable
from core.settings import ModelSettings
from model.pipeline import FittedModel, fit_model, interactions_for
from tooling.offline.evaluation import UserEvaluation, evaluate_top
from tooling.offline.split import Split

logger = logging.getLogger(__name__)

# Trials only need the exact scores: an exact index is cheap to build and does not change them.
NO_ANN = 2**31 - 1


def training_events(split: Split, table: EventTable) -> EventTable:
    """The events of ``split``'s training pairs up to each user's training cutoff."""
    users = np.asarray(table.user_id).astype(str)
    items = np.asarray(table.item_id).astype(str)
    rows = np.searchsorted(split.user_ids, users)
    cols = np.searchsorted(split.item_ids, items)
    known = (rows < split.n_users) & (cols < split.n_items)
    known[known] &= split.user_ids[rows[known]] == users[known]
    known[known] &= split.item_ids[cols[known]] == items[known]
    train = split.train_ts
    counts = np.diff(train.indptr)
    cutoff = np.full(split.n_users, -np.inf)
    has = counts > 0
    cutoff[has] = np.maximum.reduceat(train.data, train.indptr[:-1][has])
    keep = known.copy()
    keep[known] &= table.ts_ms[known] <= cutoff[rows[known]]
    pair_keys = np.repeat(np.arange(split.n_users, dtype=np.int64), counts) * split.n_items + train.indices
    keys = rows[keep].astype(np.int64) * split.n_items + cols[keep]
    pos = np.minimum(np.searchsorted(pair_keys, keys), max(len(pair_keys) - 1, 0))
    keep[keep] &= pair_keys[pos] == keys if len(pair_keys) else False
    return EventTable(
        user_id=table.user_id[keep],
        item_id=table.item_id[keep],
        event_type=table.event_type[keep],
        value=table.value[keep],
        ts_ms=table.ts_ms[keep],
    )


def settings_for(params: dict[str, Any], base: ModelSettings | None = None) -> ModelSettings:
    """``ModelSettings`` with the searched fields set (unknown keys are refused by validation)."""
    base = base or ModelSettings()
    return ModelSettings.model_validate({**base.model_dump(), **params})


@dataclass(frozen=True)
class ServedFit:
    """A production fit on one split, lined up with the split's rows and columns."""

    fitted: FittedModel
    split: Split
    user_rows: np.ndarray  # per split row: the row in fitted.interactions, -1 if the user has none
    item_cols: np.ndarray  # per fitted item column: the split's column (-1: not a training item)

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores over the split's items (the exact ranking of each user's served vector)."""
        out = np.zeros((len(rows), self.split.n_items), dtype=np.float32)
        mine = self.user_rows[rows]
        ok = mine >= 0
        if ok.any():
            scores = self.fitted.scores(mine[ok])
            cols = self.item_cols >= 0
            block = np.full((int(ok.sum()), self.split.n_items), -np.inf, dtype=np.float32)
            block[:, self.item_cols[cols]] = scores[:, cols]
            out[ok] = block
        return out

    def index_config(self) -> dict[str, Any]:
        """What the model's index is: its kind plus what retrain's artifact config records about it."""
        model = self.fitted.model
        recorded = dict(model.config.get("ann") or {})
        live = {"kind": model.index_kind, "search_effort": model.search_effort}
        nlist = getattr(model.index, "nlist", None)
        if nlist is not None:
            live["nlist"] = int(nlist)
        # A reindexed model keeps its artifact's record of the index it was trained with: drop it then.
        return {**recorded, **live} if recorded.get("kind") == live["kind"] else live

    def served_ranking(self, k: int = 20) -> UserEvaluation:
        """Each test user's top ``k`` through the model's index with serving's ``exclude_seen=true``."""
        split = self.split
        rows = np.flatnonzero(np.diff(split.test.indptr) > 0)
        top = np.full((len(rows), k), -1, dtype=np.int64)
        mine = self.user_rows[rows]
        ok = np.flatnonzero(mine >= 0)
        col = {str(item): j for j, item in enumerate(split.item_ids.tolist())}
        recs = self.fitted.recommend(mine[ok], k, exclude_seen=True)
        for n, ranked in zip(ok.tolist(), recs, strict=True):
            found = [col.get(item, -1) for item, _ in ranked]
            top[n, : len(found)] = found
        return evaluate_top(top, split.test, k=10, k_max=k)


def fit_served(split: Split, events: EventTable, settings: ModelSettings) -> ServedFit:
    fitted = fit_model(events, settings)
    return line_up(fitted, split)


def line_up(fitted: FittedModel, split: Split) -> ServedFit:
    user_rows, item_cols = line_up_ids(fitted.interactions.user_ids, fitted.interactions.item_ids, split)
    if (user_rows < 0).any() or (item_cols < 0).any():
        logger.warning(
            "served_fit_mismatch users_missing=%d items_outside=%d",
            int((user_rows < 0).sum()),
            int((item_cols < 0).sum()),
        )
    return ServedFit(fitted=fitted, split=split, user_rows=user_rows, item_cols=item_cols)


def reindexed(fit: ServedFit, settings: ModelSettings, exact_max_items: int | None = None) -> ServedFit:
    """The same fit over retrain's index for this catalog, or (``exact_max_items=0``) forced ANN."""
    return ServedFit(
        fitted=fit.fitted.reindexed(settings, exact_max_items),
        split=fit.split,
        user_rows=fit.user_rows,
        item_cols=fit.item_cols,
    )


def production_inputs(
    split: Split, events: EventTable, settings: ModelSettings
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The training matrix and recency ranks production builds from ``events`` under ``settings``
    (input weighting, history order), laid out in ``split``'s rows and columns: what ease_recency reads."""
    interactions = interactions_for(events, settings)
    ranks = interactions.recency_ranks()
    fit = line_up_ids(interactions.user_ids, interactions.item_ids, split)
    coo = interactions.matrix.tocoo()
    rank_coo = ranks.tocoo()
    rows_of = np.flatnonzero(fit[0] >= 0)
    back = np.full(len(interactions.user_ids), -1, dtype=np.int64)
    back[fit[0][rows_of]] = rows_of
    shape = (split.n_users, split.n_items)
    out = []
    for m in (coo, rank_coo):
        r, c = back[m.row], fit[1][m.col]
        ok = (r >= 0) & (c >= 0)
        out.append(sp.csr_matrix((m.data[ok].astype(np.float32), (r[ok], c[ok])), shape=shape))
    for m in out:
        m.sort_indices()
    return out[0], out[1]


def line_up_ids(user_ids: np.ndarray, item_ids: np.ndarray, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(per split row: the row among ``user_ids`` or -1, per item column: the split's column or -1)."""
    ids = np.asarray(user_ids).astype(str)
    pos = np.minimum(np.searchsorted(ids, split.user_ids), max(len(ids) - 1, 0))
    user_rows = np.where(ids[pos] == split.user_ids, pos, -1)
    items = np.asarray(item_ids).astype(str)
    cpos = np.minimum(np.searchsorted(split.item_ids, items), max(split.n_items - 1, 0))
    item_cols = np.where(split.item_ids[cpos] == items, cpos, -1)
    return user_rows, item_cols
