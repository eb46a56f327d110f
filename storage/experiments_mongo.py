"""The MongoDB adapter of ``storage.experiments.ExperimentStore`` (collection ``experiments``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.experiments import Experiment
from core.settings import MongoSettings
from storage.experiments import COLLECTION, ExperimentExists, UnknownExperiment


def _to_doc(experiment: Experiment) -> dict[str, Any]:
    doc = experiment.model_dump(mode="python")
    doc["_id"] = doc["experiment_id"]
    return doc


def _from_doc(doc: dict[str, Any]) -> Experiment:
    data = {k: v for k, v in doc.items() if k != "_id"}
    for key in ("created_at", "stopped_at"):
        stamp = data.get(key)
        if isinstance(stamp, datetime) and stamp.tzinfo is None:
            data[key] = stamp.replace(tzinfo=UTC)
    return Experiment.model_validate(data)


class MongoExperimentStore:
    def __init__(self, database: Any) -> None:
        self._collection = database[COLLECTION]
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: MongoSettings) -> MongoExperimentStore:
        """On its own MongoClient, closed by ``close()``."""
        client: Any = MongoClient(
            settings.uri.get_secret_value(),
            serverSelectionTimeoutMS=settings.timeout_ms,
            connectTimeoutMS=settings.timeout_ms,
            tz_aware=True,
        )
        store = cls(client[settings.database])
        store._client = client
        return store

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def create(self, experiment: Experiment) -> Experiment:
        stored = experiment.model_copy(update={"created_at": experiment.created_at or datetime.now(UTC)})
        try:
            self._collection.insert_one(_to_doc(stored))
        except DuplicateKeyError:
            raise ExperimentExists(f"experiment {experiment.experiment_id!r} already exists") from None
        return stored

    def get(self, experiment_id: str) -> Experiment:
        doc = self._collection.find_one({"_id": experiment_id})
        if doc is None:
            raise UnknownExperiment(experiment_id)
        return _from_doc(doc)

    def list(self) -> list[Experiment]:
        return [_from_doc(d) for d in self._collection.find().sort("created_at", DESCENDING)]

    def update(self, experiment_id: str, **fields: Any) -> Experiment:
        current = self.get(experiment_id)
        # Validated before it is written: a bad field never reaches the stored document.
        updated = Experiment.model_validate({**current.model_dump(), **fields})
        doc = self._collection.find_one_and_replace(
            {"_id": experiment_id}, _to_doc(updated), return_document=ReturnDocument.AFTER
        )
        if doc is None:
            raise UnknownExperiment(experiment_id)
        return _from_doc(doc)
