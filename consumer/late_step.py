"""Credit stored events to the batch's impressions that arrived after them (``core.late_attribution``).

Runs in the processor's MongoDB step right after the impressions are inserted, for every impression
of the batch, the ones already stored included: a consumer killed between the insert and this pass
finds them stored when the batch is read again, and must still credit what they explain. The pass is
idempotent (the store writes an update only over the state it replaces), so running it again is free
of effects. Cost: nothing for a batch without live impressions; otherwise one query for the events in
scope, and, when some are found, the two impression reads of ``consumer.impression_step`` and one
unordered write.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from consumer.impression_step import label
from core.attribution import RecentIndex, window_start
from core.impressions import Impression
from core.late_attribution import AttributionUpdate, late_scope, late_updates
from core.settings import AttributionSettings
from storage.event_store import EventStore
from storage.impressions import ImpressionStore

log = logging.getLogger(__name__)

# (event_type, model_version, variant, by, change) → events credited late.
LateCounts = Counter[tuple[str, str, str, str, str]]


def attribute_late(
    events: EventStore,
    impressions: ImpressionStore,
    settings: AttributionSettings,
    shown: Sequence[Impression],
) -> LateCounts:
    """Update the stored events that ``shown`` (the batch's stored impressions) credit; returns what
    changed (``AttributionUpdate.change``: new, upgraded, moved)."""
    counts: LateCounts = Counter()
    scope = late_scope(shown, settings.window_s)
    types = frozenset(settings.event_types)
    if scope is None or not types:
        return counts
    found = events.late_attribution_candidates(
        scope.user_ids, scope.item_ids, scope.since, scope.until, types
    )
    if not found:
        return counts
    # The candidates: everything the rules would have seen had these impressions come first.
    named = {str(d["recommendation_id"]) for d in found if d.get("recommendation_id") is not None}
    by_id = impressions.impressions_by_id(named) if named else {}
    since = window_start(min(d["ts"] for d in found), settings.window_s)
    recent = impressions.recent_for_users({str(d["user_id"]) for d in found}, since)
    index = RecentIndex.build(recent, pairs={(str(d["user_id"]), str(d["item_id"])) for d in found})
    updates = late_updates(found, by_id=by_id, recent=index, window_s=settings.window_s, event_types=types)
    if not updates:
        return counts
    written = events.set_attribution(updates)
    confirmed: Sequence[AttributionUpdate] = updates
    if written < len(updates):
        # Another consumer got there first, or the shopper was erased meanwhile: count what holds.
        stored = events.stored_events([u.event_id for u in updates])
        confirmed = [
            u for u in updates if (d := stored.get(u.event_id)) and d.get("attribution") == u.attribution
        ]
    for u in confirmed:
        att = u.attribution
        key = (u.event_type, label(att["model_version"]), label(att["variant"]), att["by"], u.change)
        counts[key] += 1
    log.info(
        "event=late_attribution impressions=%d candidates=%d updates=%d written=%d",
        len(shown),
        len(found),
        len(updates),
        written,
    )
    return counts
