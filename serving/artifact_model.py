"""``ServingModel`` over a trained ``ModelArtifact``, served through ``model.recommender.Recommender``.

The Recommender owns fold-in (with the model's recency boost) and the FAISS index; this adapter adds
what serving needs on top: item rows by id, exclusion-aware search with plain-Python id lookups, and
a popularity fallback derived from the model itself.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from core.errors import ArtifactError
from core.settings import ModelSettings
from model.artifact import ModelArtifact
from model.index import AnnParams
from model.recommender import Recommender


def _model_popularity(artifact: ModelArtifact) -> np.ndarray:
    """A popularity score per item from the artifact alone (it stores no counts): what the model
    recommends to the average training user. An artifact without users falls back to the bias column."""
    items = artifact.item_embeddings
    if len(artifact.user_ids) == 0:
        return np.asarray(items[:, -1], dtype=np.float32)
    mean_user = artifact.user_embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.asarray(items @ mean_user, dtype=np.float32)


class ArtifactServingModel:
    def __init__(self, artifact: ModelArtifact, settings: ModelSettings | None = None) -> None:
        ms = settings or ModelSettings()
        self.recommender = Recommender(
            artifact, exact_max_items=ms.exact_search_max_items, ann=AnnParams.from_settings(ms)
        )
        self.artifact = artifact
        self.version = artifact.version
        self.item_ids: list[str] = [str(i) for i in artifact.item_ids.tolist()]
        self._row = {iid: r for r, iid in enumerate(self.item_ids)}
        self._items = np.ascontiguousarray(artifact.item_embeddings, dtype=np.float32)
        pop = _model_popularity(artifact)
        if not np.isfinite(pop).all():
            raise ArtifactError("model popularity scores contain NaN or inf")
        self._popular_order: list[int] = np.argsort(-pop, kind="stable")[:10_000].tolist()
        self._popularity = pop
        # The Recommender keeps the artifact's index when its kind matches this threshold, else rebuilds.
        self.index_kind = self.recommender.index_kind

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return self.artifact.dim

    def knows_item(self, item_id: str) -> bool:
        return item_id in self._row

    def user_vector(self, user_id: str) -> np.ndarray | None:
        return self.recommender.user_vector(user_id)

    def fold_in(self, pairs: Sequence[tuple[str, float]]) -> np.ndarray | None:
        """``pairs`` are newest first (as ranking builds them); the model's recency boost is applied
        oldest first, as in training. None when no item of the history is known."""
        known = [(i, w) for i, w in pairs if i in self._row]
        if not known:
            return None
        known.reverse()
        return self.recommender.fold_in_history([i for i, _ in known], [w for _, w in known])

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        return self._items[[self._row[i] for i in item_ids]]

    def search(self, query: np.ndarray, k: int, exclude_ids: Collection[str] = ()) -> list[tuple[str, float]]:
        if k <= 0:
            return []
        fetch = min(self.n_items, k + len(exclude_ids))
        scores, rows = self.recommender.search_batch(query, fetch)
        ids = self.item_ids
        out: list[tuple[str, float]] = []
        for r, s in zip(rows[0].tolist(), scores[0].tolist(), strict=True):
            if r < 0:
                continue
            iid = ids[r]
            if iid in exclude_ids:
                continue
            out.append((iid, s))
            if len(out) == k:
                break
        return out

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        if item_id not in self._row:
            return []
        return self.search(self.recommender.fold_in([(item_id, 1.0)]), k, exclude_ids=(item_id,))

    def popular_items(self, k: int) -> list[tuple[str, float]]:
        order = self._popular_order
        if k > len(order):
            order = np.argsort(-self._popularity, kind="stable")[:k].tolist()
        pop = self._popularity
        return [(self.item_ids[r], float(pop[r])) for r in order[:k]]


def load_artifact_model(files: dict[str, bytes], settings: ModelSettings) -> ArtifactServingModel:
    """Raises ``ArtifactError`` for a missing, corrupt or incompatible artifact."""
    artifact = ModelArtifact.from_files(files)
    try:
        return ArtifactServingModel(artifact, settings)
    except ArtifactError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError, RuntimeError) as exc:
        # e.g. a config.json that is not an object, or a FAISS failure on odd arrays.
        raise ArtifactError(
            f"model v{artifact.version} cannot be served: {type(exc).__name__}: {exc}"
        ) from exc
