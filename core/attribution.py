"""Which served list an interaction event is credited to (pure; the consumer calls it per batch).

The rules, in order (issue 14):

1. Only the configured event types (``settings.consumer.attribution.event_types``: click,
   add_to_cart, purchase by default) are attributed; every other event gets no attribution.
2. **By id**: the event's ``recommendation_id`` names a stored impression that is live (not a
   shadow list), belongs to the event's shopper or to nobody (an anonymous list, e.g. ``/popular``
   before login), and showed the event's item. The position is the event's own, else the item's
   position in that impression. The window does not apply: the storefront said which list it was.
   When the named impression is unknown (expired, never served, not stored yet), a shadow list,
   another shopper's, or did not show the item, the id does not count and rule 3 decides: crediting
   a list with an item it never showed would inflate that list's CTR.
3. **By window**: the most recent live impression *of that shopper* that showed the item, with
   ``impression.ts <= event.ts`` and ``event.ts - impression.ts <= window_s``; ties go to the newest
   ``ts``, then the highest impression id (deterministic, so a redelivery decides the same way). The
   position is the item's position in that impression (an event position, if any, was about the list
   the event named, not about this one). Anonymous impressions are never matched by window.
4. Otherwise: not attributed (``None``).

Times are compared in whole milliseconds, the precision MongoDB keeps, so the in-memory twin and
the real store decide alike. Impression documents are ``core.impressions.impression_document``s.
The rules read an event through ``Acted``: the parsed event when it is stored, or its stored document
when an impression that arrived later may credit it (``core.late_attribution``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.events import InteractionEvent

BY_ID = "id"
BY_WINDOW = "window"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

Doc = Mapping[str, Any]


def from_ms(ms: int) -> datetime:
    """The UTC time of whole milliseconds since the epoch (exactly, like ``to_ms``)."""
    return _EPOCH + ms * _MS


def to_ms(ts: datetime) -> int:
    """Whole milliseconds since the epoch, exactly (no float rounding); a naive time is UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _MS


def window_start(ts: datetime, window_s: float) -> datetime:
    """The earliest impression time the window rule can reach from an event at ``ts`` (whole ms,
    rounded down, so a store query with ``ts >= window_start`` misses no impression the rule takes)."""
    return _EPOCH + timedelta(milliseconds=math.floor(to_ms(ts) - window_s * 1000.0))


def shown_position(impression: Doc, item_id: str) -> int | None:
    """The item's position in the impression, or None when the impression did not show it."""
    for shown in impression.get("items") or ():
        if shown.get("item_id") == item_id:
            return int(shown["position"])
    return None


@dataclass(frozen=True)
class Acted:
    """What the rules read from an event: its parsed form, or the document the consumer stored."""

    user_id: str
    item_id: str
    event_type: str
    ts: datetime
    recommendation_id: str | None = None
    position: int | None = None

    @classmethod
    def of(cls, event: InteractionEvent) -> Acted:
        return cls(
            event.user_id,
            event.item_id,
            event.event_type.value,
            event.timestamp,
            event.recommendation_id,
            event.position,
        )

    @classmethod
    def of_document(cls, doc: Doc) -> Acted:
        """From a stored event document (``consumer.batch.event_document``)."""
        position = doc.get("position")
        return cls(
            str(doc["user_id"]),
            str(doc["item_id"]),
            str(doc["event_type"]),
            doc["ts"],
            doc.get("recommendation_id"),
            None if position is None else int(position),
        )


@dataclass(frozen=True)
class _Shown:
    ts_ms: int
    impression_id: str
    position: int
    impression: Doc


@dataclass
class RecentIndex:
    """Live impressions by (shopper, item), newest first: built once per batch, looked up per event."""

    by_pair: dict[tuple[str, str], list[_Shown]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, impressions: Iterable[Doc], pairs: Collection[tuple[str, str]] | None = None
    ) -> RecentIndex:
        """Index ``impressions``; with ``pairs`` only the (user, item) pairs the batch asks about."""
        out = cls()
        for imp in impressions:
            user = imp.get("user_id")
            if user is None or imp.get("shadow"):
                continue
            ts_ms = to_ms(imp["ts"])
            for shown in imp.get("items") or ():
                pair = (str(user), str(shown["item_id"]))
                if pairs is not None and pair not in pairs:
                    continue
                entry = _Shown(ts_ms, str(imp["_id"]), int(shown["position"]), imp)
                out.by_pair.setdefault(pair, []).append(entry)
        for entries in out.by_pair.values():
            entries.sort(key=lambda s: (s.ts_ms, s.impression_id), reverse=True)
        return out

    def latest(self, user_id: str, item_id: str, ts_ms: int, window_ms: float) -> _Shown | None:
        """The newest impression that showed the item at most ``window_ms`` before ``ts_ms``."""
        for entry in self.by_pair.get((user_id, item_id), ()):
            if entry.ts_ms > ts_ms:
                continue  # shown after the event: it cannot have caused it
            return entry if ts_ms - entry.ts_ms <= window_ms else None
        return None


def attribution_document(impression: Doc, by: str, position: int | None) -> dict[str, Any]:
    """The ``attribution`` sub-document stored on the event (see the shared contract)."""
    return {
        "impression_id": str(impression["_id"]),
        "by": by,
        "surface": impression.get("surface"),
        "model_version": impression.get("model_version"),
        "experiment_id": impression.get("experiment_id"),
        "variant": impression.get("variant"),
        "position": position,
        "impression_ts": impression["ts"],
    }


def _by_id(event: Acted, impression: Doc | None) -> dict[str, Any] | None:
    if impression is None or impression.get("shadow"):
        return None
    owner = impression.get("user_id")
    if owner is not None and owner != event.user_id:
        return None
    shown_at = shown_position(impression, event.item_id)
    if shown_at is None:
        return None
    position = event.position if event.position is not None else shown_at
    return attribution_document(impression, BY_ID, position)


def attribute(
    event: InteractionEvent | Acted,
    *,
    by_id: Mapping[str, Doc],
    recent: RecentIndex,
    window_s: float,
    event_types: Collection[str],
) -> dict[str, Any] | None:
    """The event's ``attribution`` sub-document, or None (module docstring: the rules).

    ``by_id``: the stored impressions among the batch's ``recommendation_id``s; ``recent``: the
    shoppers' live impressions since the earliest event time of the batch minus the window.
    """
    if isinstance(event, InteractionEvent):
        event = Acted.of(event)
    if event.event_type not in event_types:
        return None
    if event.recommendation_id is not None:
        found = _by_id(event, by_id.get(event.recommendation_id))
        if found is not None:
            return found
    shown = recent.latest(event.user_id, event.item_id, to_ms(event.ts), window_s * 1000.0)
    if shown is None:
        return None
    return attribution_document(shown.impression, BY_WINDOW, shown.position)
