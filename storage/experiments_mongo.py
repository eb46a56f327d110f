"""The MongoDB adapter of ``storage.experiments.ExperimentStore`` (collection ``experiments``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.experiments import Experiment
from storage.experiments import COLLECTION, ExperimentExists, UnknownExperiment
from storage.mongo_collection import OwnedCollection


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


class MongoExperimentStore(OwnedCollection):
    collection_name = COLLECTION

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
