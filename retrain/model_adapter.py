"""The retrain ``Trainer`` port implemented with the model package (interactions → LAE → ModelArtifact).

The gate ranks with ``model.recommender.Recommender``, the same read side serving uses: each evaluated
user's history is folded in (oldest first, per-type event weights, the model's recency boost) and the
FAISS index returns the top items the user has not interacted with.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from typing import Any

import numpy as np

from core.errors import ArtifactError
from core.settings import ModelSettings
from model.artifact import ModelArtifact
from model.index import AnnParams
from model.interactions import build_interactions, event_weight
from model.lae import TrainConfig
from model.pipeline import train_artifact
from model.recommender import Recommender
from retrain.pipeline import EpochCallback
from storage.datasets import EventTable

log = logging.getLogger(__name__)


def train_config(settings: ModelSettings) -> TrainConfig:
    """TrainConfig fields that ModelSettings also has take the setting; the rest keep the model's defaults."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in settings.model_dump().items() if k in names})


class ArtifactModel:
    """A trained or loaded ``ModelArtifact`` seen through the ``CandidateModel`` port."""

    def __init__(self, artifact: ModelArtifact, weights: dict[str, float]) -> None:
        self.artifact = artifact
        self.recommender = Recommender(artifact)
        self._weights = weights

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.artifact.config)

    def recommend(self, histories: EventTable, users: list[str], k: int) -> dict[str, list[str]]:
        wanted = set(users)
        order = np.lexsort((histories.ts_ms, histories.user_id))
        per_user: dict[str, tuple[list[str], list[float]]] = {}
        for pos in order.tolist():
            user = str(histories.user_id[pos])
            if user not in wanted:
                continue
            value = float(histories.value[pos])
            w = event_weight(
                str(histories.event_type[pos]), None if np.isnan(value) else value, self._weights
            )
            items, weights = per_user.setdefault(user, ([], []))
            items.append(str(histories.item_id[pos]))
            weights.append(w)
        out: dict[str, list[str]] = {}
        # Batched search: one FAISS call per chunk of users, fetching enough to skip each user's history.
        for start in range(0, len(users), 1024):
            chunk = users[start : start + 1024]
            histories_of = [per_user.get(u, ([], [])) for u in chunk]
            queries = np.vstack([self.recommender.fold_in_history(i, w) for i, w in histories_of])
            fetch = min(self.recommender.n_items, k + max(len(set(i)) for i, _ in histories_of))
            _, ids = self.recommender.search_batch(queries, fetch)
            item_ids = self.artifact.item_ids
            for user, (items, _), row in zip(chunk, histories_of, ids, strict=True):
                seen = set(items)
                ranked = (str(item_ids[p]) for p in row.tolist() if p >= 0)
                out[user] = [item for item in ranked if item not in seen][:k]
        return out

    def to_files(
        self, version: int, *, metrics: dict[str, Any], data_window: dict[str, Any], trained_at: datetime
    ) -> dict[str, bytes]:
        final = dataclasses.replace(
            self.artifact,
            version=version,
            metrics={**self.artifact.metrics, **metrics},
            data_window=data_window,
            trained_at=trained_at.isoformat(),
        )
        return final.to_files()


class ModelTrainer:
    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.config = train_config(settings)
        self.weights = settings.weights.model_dump()

    def fit(self, train: EventTable, on_epoch: EpochCallback | None = None) -> ArtifactModel:
        interactions = build_interactions(
            train.rows(), self.weights, half_life_days=self.settings.time_decay_half_life_days
        )
        # The version is only allocated once the gate has run; the artifact is re-stamped in to_files.
        artifact = train_artifact(
            interactions,
            self.config,
            version=0,
            exact_max_items=self.settings.exact_search_max_items,
            ann=AnnParams.from_settings(self.settings),
        )
        if on_epoch is not None:
            total = max(1, self.config.epochs)
            on_epoch(total, total, float("nan"))
        return ArtifactModel(artifact, self.weights)

    def load(self, files: dict[str, bytes]) -> ArtifactModel:
        artifact = ModelArtifact.from_files(files)
        try:
            return ArtifactModel(artifact, self.weights)
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"model v{artifact.version} cannot be opened: {exc}") from exc


def trainer_from_settings(settings: ModelSettings) -> ModelTrainer:
    return ModelTrainer(settings)
