"""A trained model plus a small side set of cold items embedded from their catalog content.

Items that arrived after training (or never had an interaction) have no collaborative embedding. Serving
embeds them with the artifact's content model (``model.content``) and keeps them here, beside the main
FAISS index: the side set is small (capped by the caller) and searched exactly, and every answer merges
the main index's top items with the side set's by score. Once a retrain sees an item interact, the new
model knows it and the collaborative embedding takes over (the side set is rebuilt per model).

``HybridModel`` answers what serving asks a model (``serving.model_port.ServingModel``); anything else
is the base ``TrainedModel``'s. ``SideItems`` is immutable; a ``ColdSet`` holds the current one and is
replaced by one reference assignment, so a model generation keeps one ``HybridModel`` while its side set
grows. Each call reads the side set once; within a generation items are only added or re-embedded
(and the oldest dropped beyond the cap), so an item a request found is still there for its reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from model.trained_model import Scored, TrainedModel


class _Rows:
    """Row storage shared by successive side sets: appends write past the rows any earlier set sees,
    so the common change (new items arrive) costs their rows, not a copy of the whole set. Only the
    set that ends at ``used`` may append; any other change copies into fresh storage."""

    def __init__(self, items: np.ndarray, inputs: np.ndarray, capacity: int) -> None:
        n, dim = items.shape
        self.items = np.empty((max(capacity, n, 1), dim), np.float32)
        self.inputs = np.empty((max(capacity, n, 1), dim - 1), np.float32)
        self.items[:n], self.inputs[:n] = items, inputs
        self.used = n


def _digest(ids: Sequence[str]) -> str:
    return hashlib.blake2b("\n".join(ids).encode(), digest_size=6).hexdigest() if ids else "-"


@dataclass(frozen=True)
class SideItems:
    """Cold items in arrival order: ids, serving item embeddings (n, dim), input embeddings (n, dim - 1)."""

    ids: tuple[str, ...]
    item_vecs: np.ndarray
    input_vecs: np.ndarray
    pos: Mapping[str, int] = field(default_factory=dict)
    inputs: Mapping[str, np.ndarray] = field(default_factory=dict)  # id -> input row, for fold-in
    # A digest of the ids held: cached answers computed with another side set are misses.
    tag: str = "-"
    _rows: _Rows | None = None

    @classmethod
    def empty(cls, dim: int) -> SideItems:
        return cls.build((), np.zeros((0, dim), np.float32), np.zeros((0, dim - 1), np.float32))

    @classmethod
    def build(
        cls, ids: Sequence[str], item_vecs: np.ndarray, input_vecs: np.ndarray, capacity: int = 0
    ) -> SideItems:
        if not (len(ids) == len(item_vecs) == len(input_vecs)):
            raise ValueError(f"{len(ids)} ids, {len(item_vecs)} item and {len(input_vecs)} input rows")
        rows = _Rows(np.asarray(item_vecs, np.float32), np.asarray(input_vecs, np.float32), capacity)
        n = len(ids)
        inputs = rows.inputs[:n]
        return cls(
            tuple(ids),
            rows.items[:n],
            inputs,
            {item: i for i, item in enumerate(ids)},
            {item: inputs[i] for i, item in enumerate(ids)},
            _digest(ids),
            rows,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.pos

    def upsert(
        self, ids: Sequence[str], item_vecs: np.ndarray, input_vecs: np.ndarray, max_items: int
    ) -> SideItems:
        """These items (re-)embedded: an item already held moves to the newest end. Beyond
        ``max_items`` the oldest arrivals are dropped (down to nine tenths of it)."""
        if not ids:
            return self
        n, m = len(self.ids), len(ids)
        rows = self._rows
        if (
            rows is not None
            and rows.used == n
            and n + m <= min(max_items, len(rows.items))
            and len(set(ids)) == m
            and not any(item in self.pos for item in ids)
        ):
            rows.items[n : n + m], rows.inputs[n : n + m] = item_vecs, input_vecs
            rows.used = n + m
            all_ids = (*self.ids, *ids)
            inputs = rows.inputs[: n + m]
            return SideItems(
                all_ids,
                rows.items[: n + m],
                inputs,
                {**self.pos, **{item: n + j for j, item in enumerate(ids)}},
                {**self.inputs, **{item: inputs[n + j] for j, item in enumerate(ids)}},
                _digest(all_ids),
                rows,
            )
        last = {item: j for j, item in enumerate(ids)}  # a repeated id: its last rows win
        new_rows = sorted(last.values())
        keep = [i for i, item in enumerate(self.ids) if item not in last]
        merged_ids = [self.ids[i] for i in keep] + [ids[j] for j in new_rows]
        items = np.vstack([self.item_vecs[keep], np.asarray(item_vecs)[new_rows]])
        inputs_all = np.vstack([self.input_vecs[keep], np.asarray(input_vecs)[new_rows]])
        start = 0
        if len(merged_ids) > max_items:
            # Over the cap: the oldest go, a tenth of the cap more than needed, so the next arrivals
            # append again instead of copying the whole set once per item.
            start = len(merged_ids) - (max_items - max(1, max_items // 10))
        # Room to grow by appends before the next copy (at most the cap).
        capacity = min(max_items, max(2 * (len(merged_ids) - start), 1024))
        return SideItems.build(merged_ids[start:], items[start:], inputs_all[start:], capacity)

    def without(self, drop: Collection[str]) -> SideItems:
        if not any(item in self.pos for item in drop):
            return self
        keep = [i for i, item in enumerate(self.ids) if item not in drop]
        return SideItems.build([self.ids[i] for i in keep], self.item_vecs[keep], self.input_vecs[keep])

    def top(self, query: np.ndarray, k: int, exclude: Collection[str] = ()) -> Scored:
        """Exact inner-product top ``k`` of the side set for one query vector."""
        if not self.ids or k <= 0:
            return []
        scores = self.item_vecs @ np.asarray(query, np.float32).ravel()
        fetch = min(len(scores), k + len(exclude))
        best = np.argpartition(-scores, fetch - 1)[:fetch] if fetch < len(scores) else np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        out: Scored = []
        for row in best.tolist():
            if self.ids[row] not in exclude:
                out.append((self.ids[row], float(scores[row])))
                if len(out) == k:
                    break
        return out


def merge(a: Scored, b: Scored, k: int) -> Scored:
    """The top ``k`` of two best-first lists by score (ties keep ``a`` first)."""
    if not b:
        return a[:k]
    return sorted([*a, *b], key=lambda pair: -pair[1])[:k]


class ColdSet:
    """The current side set of one model generation (replaced whole, never changed in place)."""

    def __init__(self, side: SideItems) -> None:
        self.side = side


class HybridModel:
    """``base`` answering for the items it knows and ``cold.side`` for cold items, searched together."""

    def __init__(self, base: TrainedModel, cold: ColdSet | SideItems) -> None:
        self.base = base
        self.cold = cold if isinstance(cold, ColdSet) else ColdSet(cold)

    @property
    def side(self) -> SideItems:
        return self.cold.side

    def __getattr__(self, name: str) -> Any:
        # Everything serving does not need cold items for (version, config, index_kind...).
        return getattr(self.base, name)

    @property
    def n_items(self) -> int:
        return self.base.n_items + len(self.side)

    def is_cold(self, item_id: str) -> bool:
        """Known only through its content embedding (no collaborative one)."""
        return not self.base.knows_item(item_id) and item_id in self.side

    def knows_item(self, item_id: str) -> bool:
        return self.base.knows_item(item_id) or item_id in self.side

    def user_vector(self, user_id: str) -> np.ndarray | None:
        return self.base.user_vector(user_id)

    def popular_items(self, k: int) -> Scored:
        return self.base.popular_items(k)

    def fold_in(self, events: Iterable[tuple[str, float]]) -> np.ndarray | None:
        """A session with a cold item folds in its content input embedding."""
        return self.base.fold_in(events, self.side.inputs)

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows for known items; a cold item dropped from the side set since (the cap) gets zeros."""
        if all(self.base.knows_item(i) for i in item_ids):
            return self.base.item_vectors(item_ids)
        side = self.side
        out = np.zeros((len(item_ids), self.base.dim), np.float32)
        for row, item in enumerate(item_ids):
            if self.base.knows_item(item):
                out[row] = self.base.item_vectors([item])[0]
            elif item in side.pos:
                out[row] = side.item_vecs[side.pos[item]]
        return out

    def recommend(self, query: np.ndarray | Any, k: int, exclude: Collection[str] = ()) -> Scored:
        side = self.side
        vec = query if isinstance(query, np.ndarray) else self.base.fold_in(query, side.inputs)
        if vec is None:  # a history of nothing known: the base model's popularity query
            return self.base.recommend(query, k, exclude)
        return merge(self.base.recommend(vec, k, exclude), side.top(vec, k, exclude), k)

    def similar(self, item_id: str, k: int) -> Scored:
        """Items a one-item history leads to; a cold item's history is its content input embedding."""
        if not self.knows_item(item_id):
            return []
        query = self.base.item_query(item_id, self.side.inputs)
        return self.recommend(query, k, exclude=(item_id,))
