"""The serving benchmark's model: a real ``ModelArtifact`` with structured random embeddings.

Training a 100k x 50k (or 1M-item) model in a benchmark would take far longer than the serving run it
feeds, so the arrays are generated with the artifact's exact layout instead (items near one of
~sqrt(items) cluster centres, output embeddings with the bias as last dimension, users as mixes of
centres ending in a constant 1) and published through the same ``ModelArtifact.to_files`` +
FAISS index code retrain uses; serving then loads it through its real loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.artifact import ModelArtifact


@dataclass
class SyntheticModel:
    artifact: ModelArtifact
    popularity: np.ndarray  # per item, what the Redis popularity zset is seeded with
    index_kind: str
    ann_recall_at_20: float | None  # recall@20 of the published HNSW index vs exact search; None if exact


def synthetic_artifact(items: int, users: int, factors: int, settings: Any, seed: int = 0) -> SyntheticModel:
    """The index kind follows ``settings.model.exact_search_max_items``, as in retrain and serving."""
    import faiss

    from model.index import build_index

    rng = np.random.default_rng(seed)
    n_centres = max(8, int(items**0.5))
    centres = rng.normal(size=(n_centres, factors)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    item_centre = rng.integers(0, n_centres, items)
    noise = np.float32(0.35 / factors**0.5)
    inputs = centres[item_centre] + noise * rng.standard_normal((items, factors), dtype=np.float32)
    outputs = centres[item_centre] + noise * rng.standard_normal((items, factors), dtype=np.float32)
    popularity = np.minimum(rng.zipf(1.3, items), 1e6).astype(np.float32)
    bias = 0.05 * np.log1p(popularity) / np.log1p(popularity.max())
    item_emb = np.hstack([outputs, bias[:, None]]).astype(np.float32)
    del outputs
    taste = centres[rng.integers(0, n_centres, users)] + 0.5 * centres[rng.integers(0, n_centres, users)]
    user_emb = np.hstack([taste, np.ones((users, 1), dtype=np.float32)]).astype(np.float32)

    ms = settings.model
    exact_max = ms.exact_search_max_items
    faiss_index = build_index(
        item_emb, exact_max_items=exact_max, hnsw_m=ms.hnsw_m, ef_search=ms.hnsw_ef_search
    )
    kind = "exact" if items <= exact_max else "hnsw"
    recall = None if kind == "exact" else served_recall(faiss_index, item_emb, user_emb[:1000], k=20)
    artifact = ModelArtifact(
        version=1,
        item_ids=np.array([f"i{j}" for j in range(items)]),
        user_ids=np.array([f"u{j}" for j in range(users)]),
        item_embeddings=item_emb,
        user_embeddings=user_emb,
        input_embeddings=inputs,
        config={
            "factors": factors,
            "recency_boost": ms.recency_boost,
            "recency_half_life": ms.recency_half_life,
            "exact_search_max_items": exact_max,
            "hnsw_m": ms.hnsw_m,
            "hnsw_ef_search": ms.hnsw_ef_search,
            "synthetic": True,
        },
        metrics={"synthetic": True},
        index_bytes=bytes(faiss.serialize_index(faiss_index).tobytes()),
    )
    return SyntheticModel(artifact, popularity, kind, recall)


def served_recall(index: Any, item_emb: np.ndarray, queries: np.ndarray, k: int = 20) -> float:
    """Recall@k of ``index`` (the one that is published and served) against exact inner-product search:
    ``model.index.ann_recall`` measured on the served graph instead of a second, rebuilt one."""
    import faiss

    exact = faiss.IndexFlatIP(item_emb.shape[1])
    exact.add(np.ascontiguousarray(item_emb))
    q = np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact.search(q, k)
    _, found = index.search(q, k)
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found, strict=True))
    return hits / max(int((truth >= 0).sum()), 1)


def publish_artifact(settings: Any, artifact: ModelArtifact) -> int:
    from storage.model_registry import open_model_registry

    registry = open_model_registry(settings)
    try:
        version = registry.publish(artifact.to_files(), {"metrics": {"synthetic": True}})
        registry.promote(version, "serving benchmark")
    finally:
        registry.close()
    return version
