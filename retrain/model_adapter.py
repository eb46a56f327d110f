"""The retrain ``Trainer`` port implemented with the model package (interactions → LAE → ModelArtifact).

What it fits or loads is a ``model.trained_model.TrainedModel``, the same read side serving uses, so the
gate (``retrain.gate.gate_rankings``) judges a model exactly as shoppers will be served by it.
"""

from __future__ import annotations

import logging

from core.event_table import EventTable
from core.settings import ModelSettings
from model.pipeline import fit_model, train_config
from model.trained_model import TrainedModel
from retrain.pipeline import EpochCallback
from retrain.stages import StageClock

log = logging.getLogger(__name__)

__all__ = ["ModelTrainer", "train_config", "trainer_from_settings"]


class ModelTrainer:
    """Trains through ``model.pipeline.fit_model``, the one path the quality benchmark also measures."""

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self.config = train_config(settings)
        self.weights = settings.weights

    def fit(
        self, train: EventTable, on_epoch: EpochCallback | None = None, stages: StageClock | None = None
    ) -> TrainedModel:
        clock = stages or StageClock()
        # The version is only allocated once the gate has run; the artifact is re-stamped in to_files.
        model = fit_model(train, self.settings, stage=clock.stage).model
        if on_epoch is not None:
            total = max(1, self.config.epochs)
            on_epoch(total, total, float("nan"))
        return model

    def load(self, files: dict[str, bytes]) -> TrainedModel:
        return TrainedModel.from_files(files)


def trainer_from_settings(settings: ModelSettings) -> ModelTrainer:
    return ModelTrainer(settings)
