"""A user's recent interactions as the consumer writes them and serving reads them.

Each interaction is one member of the ``user:{<uid>}:recent`` zset (``core.keys``), scored by the event's
epoch milliseconds. The member is compact JSON: ``{"e": event id, "i": item id, "t": event type}`` plus
``"v": value`` when the event carries one (a rating). The event id keeps two interactions with the same
item distinct members. ``recent_member`` is the only encoder (consumer, rebuild) and ``parse_recent`` the
only decoder (serving's Redis reader).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class RecentEvent:
    event_id: str
    item_id: str
    event_type: str
    ts_ms: int
    # The event's value (a ``rate`` event's rating); None when it has none. Members written before the
    # value was recorded have none either.
    value: float | None = None


def recent_member(event_id: str, item_id: str, event_type: str, value: float | None = None) -> str:
    body: dict[str, object] = {"e": event_id, "i": item_id, "t": event_type}
    if value is not None:
        body["v"] = float(value)
    return orjson.dumps(body).decode()


def parse_recent(member: bytes | str, score: float) -> RecentEvent | None:
    """The interaction a zset member and its score describe; None for a member that is not one."""
    try:
        data = orjson.loads(member)
        raw_value = data.get("v")
        value = None if raw_value is None else float(raw_value)
        if value is not None and not math.isfinite(value):
            value = None
        return RecentEvent(str(data["e"]), str(data["i"]), str(data["t"]), int(score), value)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
