"""The retrain-request port's contract, run against MongoDB and against the in-memory twin."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from storage.retrain_requests import (
    COLLECTION,
    InMemoryRetrainRequests,
    MongoRetrainRequests,
    RetrainRequests,
)


@pytest.fixture(params=["mongo", "memory"])
def requests(request: pytest.FixtureRequest) -> Iterator[RetrainRequests]:
    if request.param == "memory":
        yield InMemoryRetrainRequests()
        return
    yield MongoRetrainRequests(request.getfixturevalue("mongo_db"))


def test_a_request_is_pending_until_taken(requests: RetrainRequests) -> None:
    assert requests.pending() == [] and requests.take() is None
    made = requests.request("new catalog")
    assert made.status == "pending" and made.reason == "new catalog" and made.requested_at.tzinfo is not None
    assert [(r.id, r.reason, r.status) for r in requests.pending()] == [(made.id, "new catalog", "pending")]
    taken = requests.take()
    assert taken is not None and (taken.id, taken.reason, taken.status) == (made.id, "new catalog", "taken")
    assert requests.pending() == [] and requests.take() is None


def test_take_claims_the_oldest_first_and_each_only_once(requests: RetrainRequests) -> None:
    # Made back to back, usually within one millisecond: the order still holds.
    made = [requests.request(f"r{n}") for n in range(5)]
    assert [r.id for r in requests.pending()] == [m.id for m in made]
    taken = [requests.take() for _ in range(6)]
    assert [t.reason if t else None for t in taken] == ["r0", "r1", "r2", "r3", "r4", None]


def test_documents_stored_by_earlier_releases_are_read_and_taken(mongo_db: Any) -> None:
    """The document shape is the one serving wrote before the port existed (uuid4 ids, naive dates)."""
    old = {
        "_id": "3f1c" * 8,
        "requested_at": datetime(2026, 1, 2, 3, 4, 5),
        "reason": "old",
        "status": "pending",
    }
    mongo_db[COLLECTION].insert_one(old)
    requests = MongoRetrainRequests(mongo_db)
    newer = requests.request("new")
    assert [r.reason for r in requests.pending()] == ["old", "new"]
    first = requests.take()
    assert first is not None and first.id == old["_id"]
    assert first.requested_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = mongo_db[COLLECTION].find_one({"_id": old["_id"]})
    assert stored["status"] == "taken" and "taken_at" in stored
    assert set(mongo_db[COLLECTION].find_one({"_id": newer.id})) == {
        "_id",
        "requested_at",
        "reason",
        "status",
    }


def test_the_twin_fails_like_an_outage_when_told() -> None:
    twin = InMemoryRetrainRequests()
    twin.fail_with = ConnectionError("mongo is down")
    for call in (lambda: twin.request("x"), twin.pending, twin.take):
        with pytest.raises(ConnectionError):
            call()
