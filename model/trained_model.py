"""The one read side of a trained model: serving, the retrain gate and the quality benchmark all rank
through ``TrainedModel``.

It owns the artifact's item-id map and FAISS index and answers ``recommend`` (for a history or a user
vector), ``recommend_batch``, ``similar`` and ``fold_in``. User vectors live in the same space as fold-in
vectors (weighted sums of input item embeddings plus a constant 1 for the bias dimension), so long-term
taste and a live session can be blended linearly by the caller.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import scipy.sparse as sp

from core.errors import ArtifactError
from model.artifact import ModelArtifact
from model.content import ContentFeaturizer, ContentModel
from model.history_weighting import (
    DEFAULT_ORDER,
    DEFAULT_WEIGHTING,
    check_order,
    check_weighting,
    fold_history,
)
from model.index import (
    EXACT,
    AnnParams,
    build_serving_index,
    index_kind,
    search,
    search_effort,
    set_search_effort,
    stored_search_effort,
)
from model.recency import apply_recency, recency_weights

if TYPE_CHECKING:  # model.lae imports torch, which serving never loads
    from model.lae import LAEWeights, TrainConfig

logger = logging.getLogger(__name__)

# (item id, weight) pairs ordered oldest first: a user's history as every caller hands it in.
History = Sequence[tuple[str, float]]
Scored = list[tuple[str, float]]
# Users folded in and searched per FAISS call in recommend_batch: bounds the query matrix's memory.
BATCH = 1024


def _model_popularity(artifact: ModelArtifact) -> np.ndarray:
    """A popularity score per item from the artifact alone (it stores no counts): what the model
    recommends to the average training user. An artifact without users falls back to the bias column."""
    items = artifact.item_embeddings
    if len(artifact.user_ids) == 0:
        return np.asarray(items[:, -1], dtype=np.float32)
    mean_user = artifact.user_embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.asarray(items @ mean_user, dtype=np.float32)


class TrainedModel:
    """A trained model's read side over its ``ModelArtifact``.

    The artifact's own FAISS index is served at the search effort recorded in its config; it is rebuilt
    (and calibrated again, on the artifact's user vectors) only when it is missing or its kind (exact vs
    approximate) disagrees with ``exact_max_items``; ``ann`` says how to build it then. With
    ``load_index=False`` (a model the quality benchmark scores densely) the index is built on first use.
    """

    def __init__(
        self,
        artifact: ModelArtifact,
        exact_max_items: int | None = None,
        ann: AnnParams | None = None,
        *,
        load_index: bool = True,
        keep_index_bytes: bool = False,
    ) -> None:
        self.artifact = artifact
        # Once the index is loaded its serialized bytes are dropped (at 1M items they are ~2 GiB a
        # serving process would hold for nothing); ``to_files`` then serializes the loaded index
        # again. A model about to be published keeps them instead (``keep_index_bytes``), which costs
        # less than serializing it at publication.
        self._keep_index_bytes = keep_index_bytes
        self._index_bytes_dropped = False
        cfg = artifact.config
        self._exact = int(
            exact_max_items if exact_max_items is not None else cfg.get("exact_search_max_items", 200_000)
        )
        self._ann = ann
        self.item_ids: list[str] = [str(i) for i in artifact.item_ids.tolist()]
        self._item_pos = {item: i for i, item in enumerate(self.item_ids)}
        self._user_pos = {user: i for i, user in enumerate(artifact.user_ids.tolist())}
        self._recency_boost = float(cfg.get("recency_boost", 0.0))
        self._recency_half_life = float(cfg.get("recency_half_life", 1.0))
        # Artifacts from before these settings carry neither: they trained as the defaults do.
        self._weighting = check_weighting(str(cfg.get("input_weighting", DEFAULT_WEIGHTING)))
        self._order = check_order(str(cfg.get("history_order", DEFAULT_ORDER)))
        items = np.ascontiguousarray(artifact.item_embeddings, dtype=np.float32)
        self._items = items
        self._bias = np.ascontiguousarray(items[:, -1])
        pop = _model_popularity(artifact)
        if not np.isfinite(pop).all():
            raise ArtifactError("model popularity scores contain NaN or inf")
        self._popularity = pop
        self._popular_order: list[int] = np.argsort(-pop, kind="stable")[:10_000].tolist()
        self._index: faiss.Index | None = self._load_index() if load_index else None
        self.content = _content_model(artifact)

    @classmethod
    def from_files(
        cls, files: dict[str, bytes], exact_max_items: int | None = None, ann: AnnParams | None = None
    ) -> TrainedModel:
        """Raises ``ArtifactError`` for a missing, corrupt or incompatible artifact."""
        artifact = ModelArtifact.from_files(files)
        try:
            return cls(artifact, exact_max_items, ann)
        except ArtifactError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError, RuntimeError) as exc:
            # e.g. a config.json that is not an object, or a FAISS failure on odd arrays.
            raise ArtifactError(
                f"model v{artifact.version} cannot be opened: {type(exc).__name__}: {exc}"
            ) from exc

    @classmethod
    def from_weights(
        cls, weights: LAEWeights, config: TrainConfig, item_ids: Sequence[str] | np.ndarray
    ) -> TrainedModel:
        """A freshly trained model before it is packaged for publishing (no users, no index until a
        search needs one): what the quality benchmark scores."""
        d = weights.input_emb.shape[1] + 1
        artifact = ModelArtifact(
            version=0,
            item_ids=np.asarray(item_ids).astype(str),
            user_ids=np.zeros(0, dtype=str),
            item_embeddings=np.hstack([weights.output_emb, weights.bias[:, None]]).astype(np.float32),
            user_embeddings=np.zeros((0, d), dtype=np.float32),
            input_embeddings=weights.input_emb.astype(np.float32),
            config=dict(config.to_dict()),
        )
        return cls(artifact, load_index=False)

    def _load_index(self) -> faiss.Index:
        artifact = self.artifact
        wants_exact = len(artifact.item_ids) <= self._exact
        if artifact.index_bytes is not None:
            try:
                index = faiss.deserialize_index(np.frombuffer(artifact.index_bytes, dtype=np.uint8))
            except RuntimeError as exc:
                raise ArtifactError(f"index.faiss cannot be read: {exc}") from exc
            if index.ntotal != len(artifact.item_ids) or index.d != artifact.dim:
                raise ArtifactError(
                    f"index.faiss holds {index.ntotal} vectors of dim {index.d}; "
                    f"expected {len(artifact.item_ids)} of dim {artifact.dim}"
                )
            if (index_kind(index) == EXACT) == wants_exact:
                stored = stored_search_effort(artifact.config.get("ann"))
                if stored is not None and stored[0] == index_kind(index):
                    set_search_effort(index, stored[1])
                if not self._keep_index_bytes:
                    # A shallow copy: the caller's artifact keeps its bytes; no re-validation.
                    self.artifact = copy.copy(artifact)
                    self.artifact.index_bytes = None
                    self._index_bytes_dropped = True
                return index
        index, report = build_serving_index(
            artifact.item_embeddings,
            artifact.user_embeddings,
            exact_max_items=self._exact,
            params=self._ann or AnnParams(seed=int(artifact.config.get("seed", 0))),
        )
        logger.info("index_rebuilt_at_load version=%d kind=%s", artifact.version, report.kind)
        return index

    @property
    def index(self) -> faiss.Index:
        if self._index is None:
            self._index = self._load_index()
        return self._index

    @property
    def index_kind(self) -> str:
        """exact, ivf or hnsw: what ``recommend`` searches."""
        return index_kind(self.index)

    @property
    def search_effort(self) -> int | None:
        """IVF nprobe or HNSW efSearch in use; None for exact search."""
        return search_effort(self.index)

    @property
    def version(self) -> int:
        return self.artifact.version

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.artifact.config)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return self.artifact.dim

    def knows_item(self, item_id: str) -> bool:
        return item_id in self._item_pos

    def input_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """Input (user-tower) embeddings for ``item_ids`` (all must be known), shape (len, dim - 1)."""
        return self.artifact.input_embeddings[[self._item_pos[i] for i in item_ids]]

    def content_vectors(self, items: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
        """(serving item embeddings (n, dim), input embeddings (n, dim - 1)) predicted from catalog
        documents by the artifact's content model; None when the artifact has none."""
        if self.content is None:
            return None
        both = self.content.embed(items)
        return np.ascontiguousarray(both[:, : self.dim]), np.ascontiguousarray(both[:, self.dim :])

    def user_vector(self, user_id: str) -> np.ndarray | None:
        pos = self._user_pos.get(user_id)
        return None if pos is None else self.artifact.user_embeddings[pos].copy()

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows for ``item_ids`` (all must be known), in order, shape (len, dim)."""
        return self._items[[self._item_pos[i] for i in item_ids]]

    def popular_items(self, k: int) -> Scored:
        """What the model recommends to the average training user (the artifact stores no counts)."""
        order = self._popular_order
        if k > len(order):
            order = np.argsort(-self._popularity, kind="stable")[:k].tolist()
        pop = self._popularity
        return [(self.item_ids[r], float(pop[r])) for r in order[:k]]

    def _weighted_sum(
        self, pairs: Iterable[tuple[str, float]], extra: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """Sum of input embeddings with 1 in the bias dimension; unknown items and non-finite weights
        add nothing, so an empty history gives the pure-bias (popularity) vector. ``extra`` holds
        input embeddings of items the model does not know (cold items' content embeddings)."""
        vec = np.zeros(self.dim, dtype=np.float32)
        vec[-1] = 1.0
        rows: list[int] = []
        row_weights: list[float] = []
        cold: list[np.ndarray] = []
        cold_weights: list[float] = []
        for item_id, weight in pairs:
            if not math.isfinite(weight):
                continue
            pos = self._item_pos.get(item_id)
            if pos is not None:
                rows.append(pos)
                row_weights.append(weight)
            elif extra is not None and item_id in extra:
                cold.append(extra[item_id])
                cold_weights.append(weight)
        # One gather and one product instead of a numpy add per item (a session is tens of items).
        if rows:
            vec[:-1] = np.asarray(row_weights, np.float32) @ self.artifact.input_embeddings[rows]
        if cold:
            vec[:-1] += np.asarray(cold_weights, np.float32) @ np.stack(cold)
        return vec

    def fold_in(
        self, events: Iterable[tuple[str, float]], extra: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray | None:
        """The user vector of a history of (item, weight) pairs ordered oldest first, with the model's
        recency boost as in training. Items the model does not know (and ``extra`` does not embed)
        are dropped before the boost is counted, since training saw none; None when no item is known. A
        model trained with a non-default input weighting or history order folds in per item as it
        trained (``model.history_weighting.fold_history``)."""
        known = [(i, w) for i, w in events if i in self._item_pos or (extra is not None and i in extra)]
        known = fold_history(known, self._weighting, self._order)
        if not known:
            return None
        base = np.asarray([w for _, w in known], np.float32)
        boost = recency_weights(len(known), self._recency_boost, self._recency_half_life)
        return self._weighted_sum(zip((i for i, _ in known), (base * boost).tolist(), strict=True), extra)

    def _query(self, query: np.ndarray | History) -> np.ndarray:
        if isinstance(query, np.ndarray):
            return query
        # A history of nothing the model knows ranks by the bias dimension alone (its popularity term).
        folded = self.fold_in(query)
        return self._weighted_sum(()) if folded is None else folded

    def _ranked(self, scores: np.ndarray, rows: np.ndarray, k: int, exclude: Collection[str]) -> Scored:
        out: Scored = []
        for pos, score in zip(rows.tolist(), scores.tolist(), strict=True):
            if pos < 0:
                continue
            item = self.item_ids[pos]
            if item in exclude:
                continue
            out.append((item, float(score)))
            if len(out) == k:
                break
        return out

    def recommend(self, query: np.ndarray | History, k: int, exclude: Collection[str] = ()) -> Scored:
        """Top ``k`` (item, score) for a user vector or a history (oldest first), best first, skipping
        ``exclude``."""
        if k <= 0:
            return []
        fetch = min(self.n_items, k + len(exclude))
        scores, rows = search(self.index, self._query(query).reshape(1, -1), fetch)
        return self._ranked(scores[0], rows[0], k, exclude)

    def recommend_batch(
        self,
        queries: Sequence[np.ndarray | History],
        k: int,
        exclude: Sequence[Collection[str]] | None = None,
    ) -> list[Scored]:
        """``recommend`` for many users with one FAISS call per ``BATCH`` of them; ``exclude`` holds one
        collection per query. Each call fetches enough for its largest exclusion, so an approximate index
        may find more than ``recommend`` alone does, never less."""
        excl: Sequence[Collection[str]] = exclude if exclude is not None else [()] * len(queries)
        if len(excl) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(excl)} exclusion sets")
        if k <= 0:
            return [[] for _ in queries]
        out: list[Scored] = []
        for start in range(0, len(queries), BATCH):
            chunk = queries[start : start + BATCH]
            chunk_excl = excl[start : start + BATCH]
            vecs = np.vstack([self._query(q) for q in chunk])
            fetch = min(self.n_items, k + max(len(e) for e in chunk_excl))
            scores, rows = search(self.index, vecs, fetch)
            out.extend(self._ranked(s, r, k, e) for s, r, e in zip(scores, rows, chunk_excl, strict=True))
        return out

    def item_query(self, item_id: str, extra: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The query of a one-item history (what ``similar`` searches with); ``extra`` as in fold_in."""
        return self._weighted_sum([(item_id, 1.0)], extra)

    def similar(self, item_id: str, k: int) -> Scored:
        """Items a one-item history leads to (the model's item-item weights), excluding the item itself."""
        if not self.knows_item(item_id):
            return []
        return self.recommend(self.item_query(item_id), k, exclude=(item_id,))

    def scores(self, histories: sp.csr_matrix, recency_ranks: sp.csr_matrix) -> np.ndarray:
        """Dense scores of every item for a users x items matrix of history weights over this model's
        items; ``recency_ranks`` (same sparsity, 0 = a user's newest item) applies the model's recency
        boost as in training. The full ranking the quality benchmark evaluates."""
        history = apply_recency(histories, recency_ranks, self._recency_boost, self._recency_half_life)
        users = np.asarray(history @ self.artifact.input_embeddings, dtype=np.float32)
        return np.asarray(users @ self._output.T + self._bias)

    @cached_property
    def _output(self) -> np.ndarray:
        # The output tower apart from the bias, laid out as training's LAEWeights holds it, so dense
        # scores match LAEWeights.scores bit for bit. Built on first use: only dense scoring (the
        # quality benchmark) needs it, and at 1M items x 512 factors it is a 2 GiB copy serving and
        # retrain would otherwise hold for nothing.
        return np.ascontiguousarray(self._items[:, :-1])

    def to_files(
        self, version: int, *, metrics: dict[str, Any], data_window: dict[str, Any], trained_at: datetime
    ) -> Mapping[str, bytes]:
        """The artifact stamped for publishing: its version, figures and data window."""
        final = dataclasses.replace(
            self.artifact,
            version=version,
            metrics={**self.artifact.metrics, **metrics},
            data_window=data_window,
            trained_at=trained_at.isoformat(),
        )
        return final.to_files(self._serialized_index if self._index_bytes_dropped else None)

    def _serialized_index(self) -> bytes:
        return bytes(faiss.serialize_index(self.index).tobytes())


def _content_model(artifact: ModelArtifact) -> ContentModel | None:
    if artifact.content_weights is None or artifact.content_vocab is None:
        return None
    try:
        return ContentModel(ContentFeaturizer.from_json(artifact.content_vocab), artifact.content_weights)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"the artifact's content model cannot be read: {exc}") from exc
