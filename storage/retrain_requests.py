"""The retrain side of ``POST /v1/admin/retrain``: serving inserts pending requests, retrain takes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

COLLECTION = "retrain_requests"


def take_pending_request(db: Any) -> dict[str, Any] | None:
    """Atomically claim the oldest pending request, so two retrain replicas never both run for it."""
    doc = db[COLLECTION].find_one_and_update(
        {"status": "pending"},
        {"$set": {"status": "taken", "taken_at": datetime.now(UTC)}},
        sort=[("requested_at", 1)],
    )
    return dict(doc) if doc is not None else None
