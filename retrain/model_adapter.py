"""The retrain ``Trainer`` port implemented with the model package (interactions → LAE → ModelArtifact).

What it fits or loads is a ``model.trained_model.TrainedModel``, the same read side serving uses, so the
gate (``retrain.gate.gate_rankings``) judges a model exactly as shoppers will be served by it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from typing import Any

from core.event_table import EventTable
from core.event_weights import event_weights
from core.settings import ModelSettings
from model.content import ContentModel
from model.index import AnnParams
from model.interactions import Interactions, interactions_from_arrays
from model.lae import TrainConfig
from model.pipeline import FittedEmbeddings, fit_embeddings, fit_item_content, package_artifact
from model.trained_model import TrainedModel
from retrain.pipeline import EpochCallback
from retrain.stages import StageClock

log = logging.getLogger(__name__)


def train_config(settings: ModelSettings) -> TrainConfig:
    """TrainConfig fields that ModelSettings also has take the setting; the rest keep the model's defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in settings.model_dump().items() if k in names})


# Pages of catalog documents (``storage.event_store.EventStore.iter_items``): what cold start learns from.
CatalogPages = Callable[[], Iterable[list[dict[str, Any]]]]


class ModelTrainer:
    def __init__(self, settings: ModelSettings, catalog: CatalogPages | None = None) -> None:
        self.settings = settings
        self.config = train_config(settings)
        self.weights = settings.weights
        self.catalog = catalog

    def _content(self, interactions: Interactions, fitted: FittedEmbeddings) -> ContentModel | None:
        """The cold-start content map over the trained items' catalog documents (None when off, or
        when too few trained items have one)."""
        if self.catalog is None:
            return None
        trained = set(interactions.item_ids.astype(str).tolist())
        docs = {str(d["item_id"]): d for page in self.catalog() for d in page if str(d["item_id"]) in trained}
        return fit_item_content(
            interactions,
            fitted,
            docs,
            min_items=self.settings.content_min_items,
            max_words=self.settings.content_max_words,
            seed=self.settings.seed,
        )

    def fit(
        self, train: EventTable, on_epoch: EpochCallback | None = None, stages: StageClock | None = None
    ) -> TrainedModel:
        clock = stages or StageClock()
        with clock.stage("build"):
            # Vectorised: a window of millions of events costs no Python call per event.
            interactions = interactions_from_arrays(
                train.user_id,
                train.item_id,
                event_weights(train.event_type, train.value, self.weights),
                train.ts_ms,
                half_life_days=self.settings.time_decay_half_life_days,
            )
        with clock.stage("train"):
            fitted = fit_embeddings(interactions, self.config)
        content = None
        if self.catalog is not None and self.settings.content_cold_start:
            with clock.stage("content"):
                content = self._content(interactions, fitted)
        with clock.stage("index"):
            # The version is only allocated once the gate has run; the artifact is re-stamped in to_files.
            artifact = package_artifact(
                interactions,
                fitted,
                self.config,
                version=0,
                exact_max_items=self.settings.exact_search_max_items,
                ann=AnnParams.from_settings(self.settings),
                content=content,
            )
            del fitted, interactions
            model = TrainedModel(artifact)
        if on_epoch is not None:
            total = max(1, self.config.epochs)
            on_epoch(total, total, float("nan"))
        return model

    def load(self, files: dict[str, bytes]) -> TrainedModel:
        return TrainedModel.from_files(files)


def trainer_from_settings(settings: ModelSettings, catalog: CatalogPages | None = None) -> ModelTrainer:
    """``catalog`` (the event store's ``iter_items``) enables the cold-start content model."""
    return ModelTrainer(settings, catalog)
