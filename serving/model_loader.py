"""Turn registry artifact files into a validated ``LoadedModel``.

The files are a ``model.artifact.ModelArtifact`` as retrain publishes it (manifest.json + .npy arrays
+ optional FAISS index), served through ``model.trained_model.TrainedModel``.
Validation runs here, beside the current model: a model that cannot answer a search is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import ArtifactError
from core.settings import Settings
from model.index import AnnParams
from model.segment_popularity import segments_from_files
from model.trained_model import TrainedModel
from serving.model_holder import Loader
from serving.model_port import LoadedModel, ServingModel


def validate(model: ServingModel) -> None:
    """A smoke query through the real code path: fold-in, search and item lookup must all work."""
    if model.n_items <= 0:
        raise ArtifactError("model has no items")
    top = model.popular_items(1)
    if not top:
        raise ArtifactError("model returns no popular items")
    vec = model.fold_in([(top[0][0], 1.0)])
    if vec is None or not np.isfinite(vec).all():
        raise ArtifactError("fold-in of a known item failed")
    found = model.recommend(vec, min(5, model.n_items))
    if not found or not all(model.knows_item(i) for i, _ in found):
        raise ArtifactError("vector search returned nothing or unknown items")


def make_loader(settings: Settings) -> Loader:
    def load(files: dict[str, bytes], record: Any) -> LoadedModel:
        ms = settings.model
        # The deployment's threshold and ANN settings decide whether the artifact's index is kept or rebuilt.
        model = TrainedModel.from_files(
            files, exact_max_items=ms.exact_search_max_items, ann=AnnParams.from_settings(ms)
        )
        validate(model)
        return LoadedModel(
            model=model,
            version=str(record.version),
            metrics=dict(getattr(record, "metrics", None) or {}),
            trained_at=getattr(record, "trained_at", None),
            loaded_at=datetime.now(UTC),
            index=model.index_kind,
            segments=segments_from_files(files),
        )

    return load
