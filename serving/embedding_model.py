"""A ServingModel over plain embedding arrays and a FAISS index (exact below
``model.exact_search_max_items`` items, HNSW above).

Artifact files (no pickle): ``embeddings.npz`` saved with ``allow_pickle=False`` holding
``item_ids`` (unicode), ``item_emb`` (n_items, d) in the search space, optional ``query_emb``
(n_items, d) used for fold-in (defaults to ``item_emb``), optional ``user_ids`` + ``user_emb``,
optional ``popularity`` (n_items,); optional ``index.faiss`` (``faiss.serialize_index`` bytes) so a
large HNSW index is built once at publish time instead of in every serving process.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from core.settings import ModelSettings
from model.errors import ArtifactError

EMBEDDINGS = "embeddings.npz"
INDEX = "index.faiss"


def build_index(item_emb: np.ndarray, settings: ModelSettings) -> tuple[Any, str]:
    import faiss

    n, dim = item_emb.shape
    vectors = np.ascontiguousarray(item_emb, dtype=np.float32)
    if n <= settings.exact_search_max_items:
        flat = faiss.IndexFlatIP(dim)
        flat.add(vectors)
        return flat, "exact"
    hnsw = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = max(64, settings.hnsw_m * 2)
    hnsw.add(vectors)
    hnsw.hnsw.efSearch = settings.hnsw_ef_search
    return hnsw, "hnsw"


def to_files(arrays: dict[str, np.ndarray], index: Any | None = None) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    files = {EMBEDDINGS: buf.getvalue()}
    if index is not None:
        import faiss

        files[INDEX] = faiss.serialize_index(index).tobytes()
    return files


class EmbeddingModel:
    def __init__(
        self,
        item_ids: Sequence[str],
        item_emb: np.ndarray,
        *,
        query_emb: np.ndarray | None = None,
        user_ids: Sequence[str] = (),
        user_emb: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        index: Any,
        index_kind: str,
    ) -> None:
        self.item_ids = [str(i) for i in item_ids]
        self.item_emb = np.ascontiguousarray(item_emb, dtype=np.float32)
        self.query_emb = self.item_emb if query_emb is None else np.asarray(query_emb, dtype=np.float32)
        self.row = {iid: r for r, iid in enumerate(self.item_ids)}
        self.user_row = {str(u): r for r, u in enumerate(user_ids)}
        self.user_emb = user_emb
        pop = popularity if popularity is not None else np.zeros(len(self.item_ids))
        self._popular_order = np.argsort(-pop, kind="stable")
        self._popularity = pop
        self.index = index
        self.index_kind = index_kind

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def knows_item(self, item_id: str) -> bool:
        return item_id in self.row

    def user_vector(self, user_id: str) -> np.ndarray | None:
        row = self.user_row.get(user_id)
        if row is None or self.user_emb is None:
            return None
        return self.user_emb[row]

    def fold_in(self, pairs: Sequence[tuple[str, float]]) -> np.ndarray | None:
        rows = [(self.row[i], w) for i, w in pairs if i in self.row]
        if not rows:
            return None
        idx = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
        weights = np.fromiter((w for _, w in rows), dtype=np.float32, count=len(rows))
        return np.asarray(weights @ self.query_emb[idx], dtype=np.float32)

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        return self.item_emb[[self.row[i] for i in item_ids]]

    def search(self, query: np.ndarray, k: int, exclude_ids: Collection[str] = ()) -> list[tuple[str, float]]:
        k = min(self.n_items, k + len(exclude_ids))
        scores, rows = self.index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), k)
        ids = self.item_ids
        out = [
            (ids[r], float(s)) for r, s in zip(rows[0].tolist(), scores[0].tolist(), strict=True) if r >= 0
        ]
        if exclude_ids:
            out = [p for p in out if p[0] not in exclude_ids]
        return out

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        found = self.search(self.item_emb[self.row[item_id]], k + 1)
        return [p for p in found if p[0] != item_id][:k]

    def popular_items(self, k: int) -> list[tuple[str, float]]:
        top = self._popular_order[:k].tolist()
        return [(self.item_ids[r], float(self._popularity[r])) for r in top]


def load_embedding_model(files: dict[str, bytes], settings: ModelSettings) -> EmbeddingModel:
    if EMBEDDINGS not in files:
        raise ArtifactError(f"artifact has no {EMBEDDINGS} (files: {sorted(files)})")
    try:
        data = np.load(io.BytesIO(files[EMBEDDINGS]), allow_pickle=False)
        item_ids = [str(i) for i in data["item_ids"].tolist()]
        item_emb = np.asarray(data["item_emb"], dtype=np.float32)
        get = lambda name: data[name] if name in data.files else None  # noqa: E731
        query_emb, user_ids, user_emb, pop = (
            get("query_emb"),
            get("user_ids"),
            get("user_emb"),
            get("popularity"),
        )
    except (ValueError, KeyError, OSError, EOFError) as exc:
        raise ArtifactError(f"{EMBEDDINGS} is corrupt: {exc}") from exc
    n = len(item_ids)
    if n == 0 or item_emb.ndim != 2 or item_emb.shape[0] != n:
        raise ArtifactError(f"item_emb shape {item_emb.shape} does not match {n} item ids")
    dim = item_emb.shape[1]
    for name, arr, rows in (
        ("query_emb", query_emb, n),
        ("user_emb", user_emb, 0 if user_ids is None else len(user_ids)),
    ):
        if arr is not None and (arr.ndim != 2 or arr.shape != (rows, dim)):
            raise ArtifactError(f"{name} shape {arr.shape} is incompatible with ({rows}, {dim})")
    if not np.isfinite(item_emb).all() or (user_emb is not None and not np.isfinite(user_emb).all()):
        raise ArtifactError("embeddings contain NaN or inf")
    if INDEX in files:
        import faiss

        try:
            index = faiss.deserialize_index(np.frombuffer(files[INDEX], dtype=np.uint8))
        except RuntimeError as exc:
            raise ArtifactError(f"{INDEX} is corrupt: {exc}") from exc
        if index.ntotal != n or index.d != dim:
            raise ArtifactError(f"{INDEX} holds {index.ntotal}x{index.d}, expected {n}x{dim}")
        kind = "hnsw" if isinstance(index, faiss.IndexHNSW) else "exact"
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = settings.hnsw_ef_search
    else:
        index, kind = build_index(item_emb, settings)
    return EmbeddingModel(
        item_ids,
        item_emb,
        query_emb=query_emb,
        user_ids=[str(u) for u in user_ids.tolist()] if user_ids is not None else (),
        user_emb=user_emb,
        popularity=pop,
        index=index,
        index_kind=kind,
    )
