"""What serving needs from a trained model, as a small Protocol: ``model.trained_model.TrainedModel``
implements it (the unit tests also serve a brute-force twin through it).

Everything here is in-process math; no call may touch the network.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from model.segment_popularity import SegmentPopularity


class ServingModel(Protocol):
    @property
    def n_items(self) -> int: ...

    def knows_item(self, item_id: str) -> bool: ...

    def user_vector(self, user_id: str) -> np.ndarray | None: ...

    def fold_in(self, events: Sequence[tuple[str, float]]) -> np.ndarray | None:
        """A user vector for a history of (item, weight) pairs, oldest first; None if no item is known."""
        ...

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """Rows for ``item_ids`` (all must be known), in order, shape (len, dim)."""
        ...

    def recommend(self, query: np.ndarray, k: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        """Top ``k`` (item, score) for a user vector, best first, skipping ``exclude``."""
        ...

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]: ...

    def popular_items(self, k: int) -> list[tuple[str, float]]:
        """Most popular items in the training data (the fallback when Redis was never reachable)."""
        ...


@dataclass(frozen=True)
class LoadedModel:
    """One immutable model generation; requests grab a reference once and keep it to the end."""

    model: ServingModel
    version: str
    metrics: dict[str, Any] = field(default_factory=dict)
    trained_at: datetime | None = None
    loaded_at: datetime | None = None
    index: str = "unknown"
    # Popularity per shopper segment and whether it beat global popularity on validation (the
    # artifact's segment_popularity.json); None for an artifact published without it.
    segments: SegmentPopularity | None = None
