"""Interactions -> trained LAE -> a publishable ``ModelArtifact`` (what retrain calls)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from model.artifact import ModelArtifact
from model.content import ContentModel, fit_content_model
from model.errors import DegenerateModelError
from model.index import AnnParams, build_serving_index
from model.interactions import Interactions
from model.lae import LAEWeights, TrainConfig, apply_recency, train_lae

logger = logging.getLogger(__name__)


def serving_item_embeddings(weights: LAEWeights) -> np.ndarray:
    """Output embeddings with the bias appended, so bias is one more inner-product dimension."""
    return np.hstack([weights.output_emb, weights.bias[:, None]]).astype(np.float32)


def serving_user_embeddings(weights: LAEWeights, history: sp.csr_matrix) -> np.ndarray:
    users = weights.user_vectors(history)
    return np.hstack([users, np.ones((users.shape[0], 1), dtype=np.float32)])


@dataclass(frozen=True)
class FittedEmbeddings:
    """A fit before it is indexed and packaged (retrain times the two apart)."""

    weights: LAEWeights
    item_emb: np.ndarray  # serving item embeddings (output tower + bias column)
    user_emb: np.ndarray  # every training user's serving vector


def fit_embeddings(interactions: Interactions, config: TrainConfig) -> FittedEmbeddings:
    """Train the LAE and compute the serving embeddings; raises ``DegenerateModelError`` instead of
    returning an unusable model."""
    ranks = interactions.recency_ranks()
    weights = train_lae(interactions.matrix, config, recency_ranks=ranks)
    history = apply_recency(interactions.matrix, ranks, config.recency_boost, config.recency_half_life)
    del ranks
    item_emb = serving_item_embeddings(weights)
    user_emb = serving_user_embeddings(weights, history)
    if not np.isfinite(user_emb).all():
        raise DegenerateModelError("user embeddings contain NaN or inf")
    if float(np.abs(user_emb[:, :-1]).max(initial=0.0)) < 1e-12:
        raise DegenerateModelError("user embeddings are all zero; the fit collapsed")
    return FittedEmbeddings(weights=weights, item_emb=item_emb, user_emb=user_emb)


def fit_item_content(
    interactions: Interactions,
    fitted: FittedEmbeddings,
    catalog: Mapping[str, Mapping[str, Any]],
    *,
    min_items: int = 20,
    max_words: int = 5000,
    seed: int = 0,
) -> ContentModel | None:
    """The cold-start content map, fitted on the trained items that have a catalog document: from
    their metadata to their serving item embedding and input embedding side by side (so a new item
    can be both recommended and folded into a session). None with fewer than ``min_items`` such items."""
    ids = interactions.item_ids.astype(str).tolist()
    rows = [r for r, iid in enumerate(ids) if iid in catalog]
    if len(rows) < min_items:
        logger.info("content_model_skipped items_with_metadata=%d min=%d", len(rows), min_items)
        return None
    targets = np.hstack([fitted.item_emb[rows], fitted.weights.input_emb[rows]])
    model = fit_content_model([catalog[ids[r]] for r in rows], targets, max_words=max_words, seed=seed)
    logger.info(
        "content_model_fitted items=%d features=%d reg=%s validation_r2=%s",
        len(rows),
        model.featurizer.n_features,
        model.reg,
        model.validation_r2,
    )
    return model


def package_artifact(
    interactions: Interactions,
    fitted: FittedEmbeddings,
    config: TrainConfig,
    version: int,
    metrics: dict[str, Any] | None = None,
    data_window: dict[str, Any] | None = None,
    exact_max_items: int = 200_000,
    ann: AnnParams | None = None,
    content: ContentModel | None = None,
) -> ModelArtifact:
    """Build (and calibrate) the serving index over a fit and package both as an artifact."""
    index, report = build_serving_index(
        fitted.item_emb,
        fitted.user_emb,
        exact_max_items=exact_max_items,
        params=ann or AnnParams(seed=config.seed),
    )
    cfg: dict[str, Any] = dict(config.to_dict())
    cfg.update({"exact_search_max_items": exact_max_items, "ann": report.to_config()})
    if content is not None:
        cfg["content"] = {
            "features": content.featurizer.n_features,
            "reg": content.reg,
            "validation_r2": content.validation_r2,
        }
    return ModelArtifact(
        version=version,
        item_ids=interactions.item_ids.astype(str),
        user_ids=interactions.user_ids.astype(str),
        item_embeddings=fitted.item_emb,
        user_embeddings=fitted.user_emb,
        input_embeddings=fitted.weights.input_emb.astype(np.float32),
        config=cfg,
        metrics=dict(metrics or {}),
        trained_at=datetime.now(UTC).isoformat(),
        data_window=dict(data_window or {}),
        index_bytes=bytes(faiss.serialize_index(index).tobytes()),
        content_weights=None if content is None else content.weights.astype(np.float32),
        content_vocab=None if content is None else content.featurizer.to_json(),
    )


def train_artifact(
    interactions: Interactions,
    config: TrainConfig,
    version: int,
    metrics: dict[str, Any] | None = None,
    data_window: dict[str, Any] | None = None,
    exact_max_items: int = 200_000,
    ann: AnnParams | None = None,
) -> ModelArtifact:
    """Train and package; raises ``DegenerateModelError`` instead of returning an unusable model."""
    fitted = fit_embeddings(interactions, config)
    return package_artifact(interactions, fitted, config, version, metrics, data_window, exact_max_items, ann)
