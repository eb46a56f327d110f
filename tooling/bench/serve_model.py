"""The serving benchmark's model: a real ``ModelArtifact`` with structured random embeddings.

Training a 100k x 50k (or 1M-item) model in a benchmark would take far longer than the serving run it
feeds, so the arrays are generated with the artifact's exact layout instead (items near one of
~sqrt(items) cluster centres, output embeddings with the bias as last dimension, users as mixes of
centres ending in a constant 1) and published through the same ``ModelArtifact.to_files`` +
FAISS index code retrain uses (``model.index.build_serving_index``); serving then loads it through its
real loader.
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
    index_kind: str  # exact, ivf or hnsw
    ann: dict[str, Any]  # what the index build chose and measured (the artifact's config["ann"])
    # Recall of the published index vs exact search on held-out users (not the calibration ones),
    # unit-normalized as serving's queries; None if exact.
    ann_recall_at_20: float | None
    ann_recall_at_50: float | None


def synthetic_artifact(items: int, users: int, factors: int, settings: Any, seed: int = 0) -> SyntheticModel:
    """The index is built as retrain builds it (kind from ``settings.model``, search effort calibrated
    on up to 1000 users); recall is reported on up to 1000 other users."""
    import faiss

    from model.index import EXACT, AnnParams, build_serving_index, index_recall, unit_rows

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
    split = min(1000, users // 2)
    faiss_index, report = build_serving_index(
        item_emb, user_emb[:split], exact_max_items=exact_max, params=AnnParams.from_settings(ms)
    )
    held_out = unit_rows(user_emb[split : split + 1000])
    approximate = report.kind != EXACT and len(held_out) > 0
    recall_20 = index_recall(faiss_index, item_emb, held_out, k=20) if approximate else None
    recall_50 = index_recall(faiss_index, item_emb, held_out, k=50) if approximate else None
    ann = {**report.to_config(), "heldout_queries": len(held_out)}
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
            "ann": ann,
            "synthetic": True,
        },
        metrics={"synthetic": True},
        index_bytes=bytes(faiss.serialize_index(faiss_index).tobytes()),
    )
    return SyntheticModel(artifact, popularity, report.kind, ann, recall_20, recall_50)


def publish_artifact(settings: Any, artifact: ModelArtifact) -> int:
    from storage.model_registry_mongo import open_model_registry

    registry = open_model_registry(settings)
    try:
        version = registry.publish(artifact.to_files(), {"metrics": {"synthetic": True}})
        registry.promote(version, "serving benchmark")
    finally:
        registry.close()
    return version
