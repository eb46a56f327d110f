"""A/B experiments: the port and its in-memory twin (the MongoDB adapter is ``storage.experiments_mongo``).

Admin endpoints and ``streamrec experiment ...`` write them; every serving replica polls ``list`` and
assigns shoppers with ``core.experiments.assign``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from core.experiments import Experiment

COLLECTION = "experiments"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ExperimentExists(ValueError):
    """An experiment with this id is already stored (ids are never reused: reports key on them)."""


class UnknownExperiment(KeyError):
    pass


class ExperimentStore(Protocol):
    def create(self, experiment: Experiment) -> Experiment:
        """Store a new experiment (``created_at`` set now); raises ``ExperimentExists``."""

    def get(self, experiment_id: str) -> Experiment:
        """Raises ``UnknownExperiment``."""

    def list(self) -> list[Experiment]:
        """Every experiment, newest first."""

    def update(self, experiment_id: str, **fields: Any) -> Experiment:
        """Set fields (status, stopped_at, winner, promoted_version, evidence).

        Raises ``UnknownExperiment``."""


@dataclass
class InMemoryExperimentStore:
    items: dict[str, Experiment] = field(default_factory=dict)

    def create(self, experiment: Experiment) -> Experiment:
        if experiment.experiment_id in self.items:
            raise ExperimentExists(f"experiment {experiment.experiment_id!r} already exists")
        stored = experiment.model_copy(update={"created_at": experiment.created_at or datetime.now(UTC)})
        self.items[experiment.experiment_id] = stored
        return stored

    def get(self, experiment_id: str) -> Experiment:
        try:
            return self.items[experiment_id]
        except KeyError:
            raise UnknownExperiment(experiment_id) from None

    def list(self) -> list[Experiment]:
        return sorted(self.items.values(), key=lambda e: e.created_at or _EPOCH, reverse=True)

    def update(self, experiment_id: str, **fields: Any) -> Experiment:
        current = self.get(experiment_id)
        updated = Experiment.model_validate({**current.model_dump(), **fields})
        self.items[experiment_id] = updated
        return updated
