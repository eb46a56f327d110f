"""Event and item documents as the event stores read and write them: pure helpers shared by the MongoDB
adapter (storage/event_store.py) and its in-memory twin (storage/event_store_memory.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.late_attribution import AttributionUpdate

Doc = dict[str, Any]
# What the online reports read of an event (``attribution`` is written by the consumer).
REPORT_FIELDS = ("user_id", "item_id", "event_type", "ts", "attribution")


def ts_range(since: datetime | None, until: datetime | None) -> Doc:
    """The MongoDB condition on ``ts`` for since <= ts < until (either end may be open)."""
    condition: Doc = {}
    if since is not None:
        condition["$gte"] = since
    if until is not None:
        condition["$lt"] = until
    return condition


def report_doc(doc: Doc) -> Doc:
    """An event as the reports read it: the report fields, ``ts`` timezone-aware."""
    out = {k: doc[k] for k in ("_id", *REPORT_FIELDS) if k in doc}
    ts = out.get("ts")
    if isinstance(ts, datetime) and ts.tzinfo is None:
        out["ts"] = ts.replace(tzinfo=UTC)
    return out


def attribution_filter(update: AttributionUpdate) -> Doc:
    """The condition under which ``update`` may be written (see ``EventStore.set_attribution``)."""
    if update.attribution["by"] == "id":
        return {"_id": update.event_id, "attribution.by": {"$ne": "id"}}
    if update.expected is None:
        return {"_id": update.event_id, "attribution": {"$exists": False}}
    return {"_id": update.event_id, "attribution.by": "window", "attribution.impression_id": update.expected}


def attribution_applies(stored: Doc, update: AttributionUpdate) -> bool:
    """``attribution_filter`` in Python, for the in-memory twin."""
    current = stored.get("attribution")
    if update.attribution["by"] == "id":
        return current is None or current.get("by") != "id"
    if update.expected is None:
        return "attribution" not in stored
    return (
        current is not None
        and current.get("by") == "window"
        and current.get("impression_id") == update.expected
    )


def event_projection(fields: Sequence[str] | None) -> Doc:
    """The find() projection of ``iter_events``: everything but ``ingested_at``, or only ``fields``."""
    if fields is None:
        return {"ingested_at": 0}
    return {"_id": 1 if "_id" in fields else 0, **{f: 1 for f in fields if f != "_id"}}


def as_event(doc: Doc) -> Doc:
    out = dict(doc)
    if "_id" in out:
        out["event_id"] = out["_id"]
    ts = out.get("ts")
    if isinstance(ts, datetime) and ts.tzinfo is None:
        out["ts"] = ts.replace(tzinfo=UTC)
    return out


def as_item(doc: Doc) -> Doc:
    out = dict(doc)
    out["item_id"] = out["_id"]
    return out


def distinct_in_order(values: list[str], limit: int) -> list[str]:
    return list(dict.fromkeys(values))[:limit]
