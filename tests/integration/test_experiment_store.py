"""Contract of ``storage.experiments.ExperimentStore``: MongoExperimentStore on the real MongoDB-wire
server and InMemoryExperimentStore behave the same."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from core.experiments import Experiment, Variant
from storage.experiments import ExperimentExists, InMemoryExperimentStore, UnknownExperiment
from storage.experiments_mongo import MongoExperimentStore


@pytest.fixture(params=["mongo", "twin"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "twin":
        yield InMemoryExperimentStore()
        return
    settings = request.getfixturevalue("settings")
    mongo = MongoExperimentStore.from_settings(settings.mongo)
    try:
        yield mongo
    finally:
        mongo.close()


def experiment(experiment_id: str, created_at: datetime | None = None) -> Experiment:
    return Experiment(
        experiment_id=experiment_id,
        variants=[
            Variant(name="control", share=0.25),
            Variant(name="treatment", share=0.75, model_version="7", overrides={"session_weight": 0.8}),
        ],
        surfaces=["recommendations", "similar"],
        description="ranking with more session weight",
        created_at=created_at,
    )


def test_create_get_and_list_newest_first(store: Any) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    made = store.create(experiment("a"))
    assert made.created_at is not None and made.created_at >= before and made.status == "running"
    old = store.create(experiment("b", created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    got = store.get("a")
    assert got == made.model_copy(update={"created_at": got.created_at})
    assert got.created_at is not None and got.created_at.tzinfo is not None
    # MongoDB keeps milliseconds.
    assert abs((got.created_at - made.created_at).total_seconds()) < 0.001  # type: ignore[operator]
    assert got.variants[1].overrides == {"session_weight": 0.8} and got.surfaces == [
        "recommendations",
        "similar",
    ]
    assert store.get("b").created_at == old.created_at
    assert [e.experiment_id for e in store.list()] == ["a", "b"]
    with pytest.raises(ExperimentExists, match="already exists"):
        store.create(experiment("a"))
    with pytest.raises(UnknownExperiment):
        store.get("nope")


def test_update_writes_validated_fields_only(store: Any) -> None:
    store.create(experiment("a"))
    stopped_at = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    evidence = {
        "experiment_id": "a",
        "report": {"variants": [{"name": "treatment", "ctr": 0.12}], "winner": "t"},
    }
    updated = store.update(
        "a",
        status="promoted",
        stopped_at=stopped_at,
        winner="treatment",
        promoted_version="7",
        evidence=evidence,
    )
    assert (updated.status, updated.winner, updated.promoted_version) == ("promoted", "treatment", "7")
    again = store.get("a")
    assert again.stopped_at == stopped_at and again.evidence == evidence and again == updated
    with pytest.raises(ValidationError):
        store.update("a", status="exploded")
    assert store.get("a").status == "promoted"  # the bad update wrote nothing
    with pytest.raises(UnknownExperiment):
        store.update("nope", status="stopped")
