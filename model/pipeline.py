"""An interaction table -> trained LAE -> a publishable ``ModelArtifact`` and its read side.

``fit_model`` is the one training path: ``streamrec retrain`` (``retrain.model_adapter``) and the quality
benchmark both call it with a ``ModelSettings``, so what the benchmark measures is what ships.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import faiss
import numpy as np
import scipy.sparse as sp

from core.event_table import EventTable
from core.event_weights import event_weights
from core.settings import ModelSettings
from model.artifact import ModelArtifact
from model.content import ContentModel, fit_content_model
from model.content_ranking import RankingFit, choose_content_fit, refine_content_map
from model.errors import DegenerateModelError
from model.index import AnnParams, build_serving_index
from model.interactions import Interactions, interactions_from_arrays
from model.lae import LAEWeights, TrainConfig, apply_recency, train_lae
from model.trained_model import Scored, TrainedModel

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
    # The recency-weighted history the user vectors were folded in from (users x items).
    history: sp.csr_matrix | None = None


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
    return FittedEmbeddings(weights=weights, item_emb=item_emb, user_emb=user_emb, history=history)


def fit_item_content(
    interactions: Interactions,
    fitted: FittedEmbeddings,
    catalog: Mapping[str, Mapping[str, Any]],
    *,
    min_items: int = 20,
    max_words: int = 5000,
    seed: int = 0,
    fit: Literal["ridge", "ranking", "auto"] = "ridge",
    rank_steps: int = 1000,
    calibrate: bool = False,
) -> ContentModel | None:
    """The cold-start content map, fitted on the trained items that have a catalog document: from
    their metadata to their serving item embedding and input embedding side by side (so a new item
    can be both recommended and folded into a session). None with fewer than ``min_items`` such items.
    ``fit="ranking"``: the serving-embedding part is then refined on the shoppers' ranking
    (``model.content_ranking``); the input-embedding part stays the ridge fit. ``fit="auto"``: whichever
    of the two ranks held-out trained items better (``choose_content_fit``). ``calibrate``: the
    serving-embedding part is scaled by the chosen map's ``score_scale`` on those held-out items, so a
    new item's score is on the trained items' scale where serving merges the two into one list."""
    ids = interactions.item_ids.astype(str).tolist()
    rows = [r for r, iid in enumerate(ids) if iid in catalog]
    if len(rows) < min_items:
        logger.info("content_model_skipped items_with_metadata=%d min=%d", len(rows), min_items)
        return None
    targets = np.hstack([fitted.item_emb[rows], fitted.weights.input_emb[rows]])
    docs = [catalog[ids[r]] for r in rows]
    model = fit_content_model(docs, targets, max_words=max_words, seed=seed)
    width = fitted.item_emb.shape[1]
    ranking = RankingFit(max_steps=rank_steps, seed=seed)
    features = model.featurizer.transform(docs)
    pairs = sp.csr_matrix(interactions.matrix[:, rows])
    scores: dict[str, float] = {}
    if fit == "auto" or calibrate:
        fit, scores = choose_content_fit(
            features,
            fitted.item_emb[rows],
            model.reg,
            fitted.user_emb,
            pairs,
            ranking,
            history=None if fitted.history is None else sp.csr_matrix(fitted.history[:, rows]),
            input_emb=fitted.weights.input_emb[rows],
            kinds=("ridge", "ranking") if fit == "auto" else (fit,),
        )
    weights = model.weights
    if fit == "ranking":
        refined = refine_content_map(features, weights[:, :width], fitted.user_emb, pairs, ranking)
        weights = np.hstack([refined, weights[:, width:]]).astype(np.float32)
    scale = scores.get(f"scale_{fit}", 1.0) if calibrate else 1.0
    if scale != 1.0:
        weights = np.hstack([weights[:, :width] * np.float32(scale), weights[:, width:]]).astype(np.float32)
    model = dataclasses.replace(model, weights=weights, fit=fit, fit_scores=scores, score_scale=scale)
    logger.info(
        "content_model_fitted items=%d features=%d reg=%s validation_r2=%s fit=%s",
        len(rows),
        model.featurizer.n_features,
        model.reg,
        model.validation_r2,
        fit,
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
        seen=interactions.matrix,
    )
    # The serialized copy is all the artifact keeps: drop the index before copying the bytes out, so
    # a 1M-item index (~2 GiB) is never held three times over.
    serialized = faiss.serialize_index(index)
    del index
    index_bytes = serialized.tobytes()
    del serialized
    cfg: dict[str, Any] = dict(config.to_dict())
    cfg.update({"exact_search_max_items": exact_max_items, "ann": report.to_config()})
    if content is not None:
        cfg["content"] = {
            "features": content.featurizer.n_features,
            "reg": content.reg,
            "validation_r2": content.validation_r2,
            "fit": content.fit,
            "fit_scores": content.fit_scores,
            "score_scale": content.score_scale,
        }
    return ModelArtifact(
        version=version,
        item_ids=interactions.item_ids.astype(str),
        user_ids=interactions.user_ids.astype(str),
        item_embeddings=fitted.item_emb,
        user_embeddings=fitted.user_emb,
        input_embeddings=fitted.weights.input_emb.astype(np.float32, copy=False),
        config=cfg,
        metrics=dict(metrics or {}),
        trained_at=datetime.now(UTC).isoformat(),
        data_window=dict(data_window or {}),
        index_bytes=index_bytes,
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


def train_config(settings: ModelSettings) -> TrainConfig:
    """TrainConfig fields that ModelSettings also has take the setting; the rest keep the model's defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in settings.model_dump().items() if k in names})


def interactions_for(table: EventTable, settings: ModelSettings) -> Interactions:
    """The training matrix of ``table`` under ``settings``: event weights (``settings.weights``), time
    decay, input weighting and history order. Vectorised: millions of events cost no Python call each."""
    return interactions_from_arrays(
        table.user_id,
        table.item_id,
        event_weights(table.event_type, table.value, settings.weights),
        table.ts_ms,
        half_life_days=settings.time_decay_half_life_days,
        weighting=settings.input_weighting,
        order=settings.history_order,
    )


Stage = Callable[[str], AbstractContextManager[object]]


@dataclass(frozen=True)
class FittedModel:
    """A trained model with the training matrix it was fitted on.

    ``model`` is what retrain publishes and serving loads (its FAISS index is the one retrain built for
    this catalog size); ``interactions`` holds each training user's history as the model weighs it."""

    model: TrainedModel
    interactions: Interactions

    def rows(self, user_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each training user in ``interactions``; raises ``KeyError`` for an unknown one."""
        ids = self.interactions.user_ids
        wanted = np.asarray(user_ids).astype(str)
        pos = np.searchsorted(ids, wanted)
        ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == wanted)
        if not ok.all():
            raise KeyError(f"not training users: {wanted[~ok][:5].tolist()}")
        return pos

    def seen(self, row: int) -> set[str]:
        """The items training user ``row`` interacted with: what ``exclude_seen=true`` leaves out."""
        m = self.interactions.matrix
        return set(self.interactions.item_ids[m.indices[m.indptr[row] : m.indptr[row + 1]]].tolist())

    @cached_property
    def recency_ranks(self) -> sp.csr_matrix:
        return self.interactions.recency_ranks()

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Dense scores of every item (``interactions.item_ids`` order) for training users ``rows``: the
        exact ranking of each user's served vector (``TrainedModel.user_vector``)."""
        return self.model.scores(self.interactions.matrix[rows], self.recency_ranks[rows])

    def recommend(self, rows: np.ndarray, k: int, *, exclude_seen: bool = True) -> list[Scored]:
        """Top ``k`` per training user through the model's index, as serving ranks a known user's stored
        vector; ``exclude_seen`` leaves out every item the user interacted with in training."""
        ids = self.interactions.user_ids
        vectors = [self.model.user_vector(str(ids[r])) for r in rows.tolist()]
        queries = [v for v in vectors if v is not None]
        if len(queries) != len(vectors):
            raise KeyError("a row has no stored user vector")
        exclude: list[Collection[str]] = (
            [self.seen(r) for r in rows.tolist()] if exclude_seen else [() for _ in queries]
        )
        return self.model.recommend_batch(queries, k, exclude)

    def reindexed(self, settings: ModelSettings, exact_max_items: int | None = None) -> FittedModel:
        """The same model over the index ``model.index.serving_index_for`` builds: retrain's choice for
        this catalog size, or with ``exact_max_items=0`` the approximate index whatever the size,
        calibrated as retrain calibrates it (on the lists shown with the users' own items excluded)."""
        limit = settings.exact_search_max_items if exact_max_items is None else exact_max_items
        ann = AnnParams.from_settings(settings)
        artifact = self.model.artifact
        index, report = build_serving_index(
            artifact.item_embeddings,
            artifact.user_embeddings,
            exact_max_items=limit,
            params=ann,
            seen=self.interactions.matrix,
        )
        config = {**artifact.config, "exact_search_max_items": limit, "ann": report.to_config()}
        rebuilt = dataclasses.replace(
            artifact, config=config, index_bytes=bytes(faiss.serialize_index(index).tobytes())
        )
        model = TrainedModel(rebuilt, exact_max_items=limit, ann=ann)
        return FittedModel(model=model, interactions=self.interactions)


# Pages of catalog documents (``storage.event_store.EventStore.iter_items``): what cold start learns from.
CatalogPages = Callable[[], Iterable[Sequence[Mapping[str, Any]]]]


def content_for(
    interactions: Interactions, fitted: FittedEmbeddings, catalog: CatalogPages, settings: ModelSettings
) -> ContentModel | None:
    """The cold-start content map over the trained items' catalog documents (None when too few
    trained items have one)."""
    trained = set(interactions.item_ids.astype(str).tolist())
    docs = {str(d["item_id"]): d for page in catalog() for d in page if str(d["item_id"]) in trained}
    return fit_item_content(
        interactions,
        fitted,
        docs,
        min_items=settings.content_min_items,
        max_words=settings.content_max_words,
        seed=settings.seed,
        fit=settings.content_fit,
        rank_steps=settings.content_rank_steps,
        calibrate=settings.content_calibrate,
    )


def fit_model(
    table: EventTable,
    settings: ModelSettings,
    *,
    stage: Stage | None = None,
    version: int = 0,
    catalog: CatalogPages | None = None,
) -> FittedModel:
    """Train exactly as ``streamrec retrain`` does.

    Args:
        table: the interaction events, one row per event: ``user_id``, ``item_id``, ``event_type``,
            ``value`` (NaN where none; a ``rate`` event's rating) and ``ts_ms`` (epoch ms).
        settings: every modelling choice (``core.settings.ModelSettings``): event weights, input
            weighting, history order, time decay, factors, reg, recency boost and half-life, pop weight,
            diagonal correction, epochs, seed, and the index (exact below ``exact_search_max_items``).
        stage: optional ``name -> context manager`` timing the stages ``build``, ``train``, ``content``
            (only with a catalog), ``index``.
        version: stamped into the artifact (retrain re-stamps it at publication).
        catalog: pages of catalog documents; with ``settings.content_cold_start`` the artifact then
            carries the cold-start content map (``model.content``) fitted on the trained items.

    Returns:
        ``FittedModel``: ``.model`` is the ``TrainedModel`` retrain publishes and serving loads;
        ``.scores(rows)`` its exact dense ranking, ``.recommend(rows, k, exclude_seen=True)`` the ranking
        through its index with serving's ``exclude_seen=true`` policy.

    Raises ``model.errors.EmptyDataError`` (no positive event) or ``DegenerateModelError``.
    """
    timed: Stage = stage or (lambda _name: nullcontext())
    config = train_config(settings)
    with timed("build"):
        interactions = interactions_for(table, settings)
    with timed("train"):
        fitted = fit_embeddings(interactions, config)
    content = None
    if catalog is not None and settings.content_cold_start:
        with timed("content"):
            content = content_for(interactions, fitted, catalog, settings)
    with timed("index"):
        artifact = package_artifact(
            interactions,
            fitted,
            config,
            version=version,
            exact_max_items=settings.exact_search_max_items,
            ann=AnnParams.from_settings(settings),
            content=content,
        )
        del fitted
        model = TrainedModel(artifact, keep_index_bytes=True)  # retrain publishes it next
    return FittedModel(model=model, interactions=interactions)
