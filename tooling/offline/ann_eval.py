"""streamrec's test ranking through the FAISS index exactly as retrain packages it (``model.pipeline``),
searched through the read side serving uses (``TrainedModel.recommend_batch``, excluding the user's
training items as ``exclude_seen`` does).

Below ``exact_search_max_items`` retrain builds an exact index, so that figure equals the exact one; the
benchmark then also reports the approximate index forced on the same catalog (``exact_max_items=0``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from model.index import AnnParams
from model.interactions import Interactions
from model.lae import LAEWeights, TrainConfig
from model.pipeline import (
    FittedEmbeddings,
    package_artifact,
    serving_item_embeddings,
    serving_user_embeddings,
)
from model.recency import apply_recency
from model.trained_model import TrainedModel
from tooling.offline.evaluation import UserEvaluation, evaluate_top
from tooling.offline.split import Split

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexedFigures:
    evaluation: UserEvaluation
    index: dict[str, Any]  # what the artifact config records about its index (kind, nlist, nprobe, ...)


def indexed_model(
    split: Split,
    inputs: sp.csr_matrix,
    ranks: sp.csr_matrix,
    weights: LAEWeights,
    config: TrainConfig,
    exact_max_items: int,
    ann: AnnParams,
) -> TrainedModel:
    """The artifact retrain would publish for this fit (its index calibrated on the training users'
    vectors), opened as serving opens it."""
    interactions = Interactions(
        matrix=inputs, user_ids=split.user_ids, item_ids=split.item_ids, last_ts=split.train_ts
    )
    history = apply_recency(inputs, ranks, config.recency_boost, config.recency_half_life)
    fitted = FittedEmbeddings(
        weights=weights,
        item_emb=serving_item_embeddings(weights),
        user_emb=serving_user_embeddings(weights, history),
    )
    artifact = package_artifact(interactions, fitted, config, 1, exact_max_items=exact_max_items, ann=ann)
    return TrainedModel(artifact)


def indexed_evaluation(model: TrainedModel, split: Split, k: int = 20) -> IndexedFigures:
    """Top-k of each test user by the model's index, their training items excluded (k = 20: the
    report's metrics go to @20)."""
    rows = np.flatnonzero(np.diff(split.test.indptr) > 0)
    users = model.artifact.user_embeddings[rows]
    train = split.train
    items = split.item_ids
    exclude = [set(items[train.indices[train.indptr[r] : train.indptr[r + 1]]].tolist()) for r in rows]
    col = {str(item): j for j, item in enumerate(items.tolist())}
    ranked = model.recommend_batch(list(users), k, exclude)
    top = np.full((len(rows), k), -1, dtype=np.int64)
    for n, recs in enumerate(ranked):
        top[n, : len(recs)] = [col[item] for item, _ in recs]
    ann_cfg = dict(model.artifact.config.get("ann", {}))
    logger.info("indexed_evaluation kind=%s users=%d", model.index_kind, len(rows))
    return IndexedFigures(evaluation=evaluate_top(top, split.test, k=k, k_max=k), index=ann_cfg)
