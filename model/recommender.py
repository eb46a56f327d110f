"""The read side of a trained model, used by serving and by the retrain quality gate.

User vectors live in the same space as fold-in vectors (weighted sums of input item embeddings plus a
constant 1 for the bias dimension), so long-term taste and a live session can be blended linearly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import faiss
import numpy as np

from core.errors import ArtifactError
from model.artifact import ModelArtifact
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
from model.recency import recency_weights

logger = logging.getLogger(__name__)


class Recommender:
    """Serves the artifact's own FAISS index at the search effort recorded in its config. The index is
    rebuilt (and calibrated again, on the artifact's user vectors) only when it is missing or its kind
    (exact vs approximate) disagrees with ``exact_max_items``; ``ann`` says how to build it then."""

    def __init__(
        self, artifact: ModelArtifact, exact_max_items: int | None = None, ann: AnnParams | None = None
    ) -> None:
        self.artifact = artifact
        cfg = artifact.config
        exact = int(
            exact_max_items if exact_max_items is not None else cfg.get("exact_search_max_items", 200_000)
        )
        self._index = self._load_index(artifact, exact, ann)
        self._item_pos = {item: i for i, item in enumerate(artifact.item_ids.tolist())}
        self._user_pos = {user: i for i, user in enumerate(artifact.user_ids.tolist())}
        self._recency_boost = float(cfg.get("recency_boost", 0.0))
        self._recency_half_life = float(cfg.get("recency_half_life", 1.0))

    @staticmethod
    def _load_index(artifact: ModelArtifact, exact: int, ann: AnnParams | None) -> faiss.Index:
        wants_exact = len(artifact.item_ids) <= exact
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
                return index
        index, report = build_serving_index(
            artifact.item_embeddings,
            artifact.user_embeddings,
            exact_max_items=exact,
            params=ann or AnnParams(seed=int(artifact.config.get("seed", 0))),
        )
        logger.info("index_rebuilt_at_load version=%d kind=%s", artifact.version, report.kind)
        return index

    @property
    def index_kind(self) -> str:
        """exact, ivf or hnsw: what ``search`` runs on."""
        return index_kind(self._index)

    @property
    def search_effort(self) -> int | None:
        """IVF nprobe or HNSW efSearch in use; None for exact search."""
        return search_effort(self._index)

    @property
    def version(self) -> int:
        return self.artifact.version

    @property
    def n_items(self) -> int:
        return len(self.artifact.item_ids)

    @property
    def dim(self) -> int:
        return self.artifact.dim

    def knows_item(self, item_id: str) -> bool:
        return item_id in self._item_pos

    def knows_user(self, user_id: str) -> bool:
        return user_id in self._user_pos

    def user_vector(self, user_id: str) -> np.ndarray | None:
        pos = self._user_pos.get(user_id)
        return None if pos is None else self.artifact.user_embeddings[pos].copy()

    def fold_in(self, pairs: Iterable[tuple[str, float]]) -> np.ndarray:
        """Exact user vector for any weighted history; unknown items are ignored. An empty history gives
        the pure-bias (popularity) vector."""
        vec = np.zeros(self.dim, dtype=np.float32)
        vec[-1] = 1.0
        for item_id, weight in pairs:
            pos = self._item_pos.get(item_id)
            if pos is not None and np.isfinite(weight):
                vec[:-1] += np.float32(weight) * self.artifact.input_embeddings[pos]
        return vec

    def fold_in_history(self, item_ids: Sequence[str], weights: Sequence[float] | None = None) -> np.ndarray:
        """Fold in a history ordered oldest first, applying the model's recency boost as in training."""
        base = (
            np.ones(len(item_ids), dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
        )
        boost = recency_weights(len(item_ids), self._recency_boost, self._recency_half_life)
        return self.fold_in(zip(item_ids, (base * boost).tolist(), strict=True))

    @staticmethod
    def blend(
        long_term: np.ndarray | None, session: np.ndarray | None, session_weight: float
    ) -> np.ndarray | None:
        """Linear blend; both vectors carry 1 in the bias dimension, and so does the blend."""
        if long_term is None:
            return session
        if session is None:
            return long_term
        return ((1.0 - session_weight) * long_term + session_weight * session).astype(np.float32)

    def search(
        self, query_vec: np.ndarray, k: int, exclude_ids: set[str] | None = None
    ) -> list[tuple[str, float]]:
        exclude = exclude_ids or set()
        if k <= 0:
            return []
        fetch = min(self.n_items, k + len(exclude))
        scores, ids = search(self._index, query_vec.reshape(1, -1), fetch)
        out: list[tuple[str, float]] = []
        for pos, score in zip(ids[0].tolist(), scores[0].tolist(), strict=True):
            if pos < 0:
                continue
            item = str(self.artifact.item_ids[pos])
            if item in exclude:
                continue
            out.append((item, float(score)))
            if len(out) == k:
                break
        return out

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        """Items a one-item history leads to (the model's item-item weights), excluding the item itself."""
        if not self.knows_item(item_id):
            return []
        return self.search(self.fold_in([(item_id, 1.0)]), k, exclude_ids={item_id})

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return search(self._index, queries, k)
