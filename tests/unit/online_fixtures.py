"""Documents for the online report tests: impressions as the consumer stores them, attributed events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.impressions import Impression, ShownItem, impression_document, shadow_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def recent(minutes_ago: float) -> float:
    """The ``minutes`` (from T0) of a moment ``minutes_ago`` before now: reports read back from now."""
    return (datetime.now(UTC) - T0).total_seconds() / 60 - minutes_ago


def impression(
    request_id: str,
    user: str | None = "u1",
    items: tuple[str, ...] = ("a", "b", "c"),
    *,
    minutes: float = 0,
    surface: str = "recommendations",
    version: str | None = "1",
    experiment: str | None = None,
    variant: str | None = None,
    shadow: bool = False,
) -> dict[str, Any]:
    imp = Impression(
        impression_id=shadow_id(request_id) if shadow else request_id,
        request_id=request_id,
        user_id=user,
        surface=surface,  # type: ignore[arg-type]
        model_version=version,
        experiment_id=experiment,
        variant=variant,
        items=[ShownItem(item_id=i, position=p) for p, i in enumerate(items)],
        ts=T0 + timedelta(minutes=minutes),
        shadow=shadow,
    )
    return impression_document(imp, ingested_at=T0)


def event(
    event_id: str,
    imp: dict[str, Any] | None,
    event_type: str = "click",
    *,
    item: str | None = None,
    user: str | None = None,
    minutes: float = 1,
    position: int | None = None,
) -> dict[str, Any]:
    """An event document; with ``imp``, attributed to it (by id) at the item's shown position."""
    item = item or (imp["item_ids"][0] if imp else "a")
    doc: dict[str, Any] = {
        "_id": event_id,
        "user_id": user or (imp["user_id"] if imp else "u1"),
        "item_id": item,
        "event_type": event_type,
        "ts": T0 + timedelta(minutes=minutes),
        "ts_ms": 0,
        "value": None,
        "session_id": None,
        "properties": None,
        "recommendation_id": imp["_id"] if imp else None,
        "position": position,
        "src": None,
        "ingested_at": T0,
    }
    if imp is not None:
        shown = imp["item_ids"].index(item) if item in imp["item_ids"] else None
        doc["attribution"] = {
            "impression_id": imp["_id"],
            "by": "id",
            "surface": imp["surface"],
            "model_version": imp["model_version"],
            "experiment_id": imp["experiment_id"],
            "variant": imp["variant"],
            "position": shown if position is None else position,
            "impression_ts": imp["ts"],
        }
    return doc
