"""The batch's impressions into MongoDB, then its events linked to them (``core.attribution``).

Both run inside the processor's MongoDB step, impressions first: an impression and the click it
caused can arrive in one batch, and the click must find it. Attribution costs at most two queries per
batch, whatever its size: one by id for the events that name a ``recommendation_id``, one by shopper
and time for the rest (``ImpressionStore.recent_for_users``), indexed once (``RecentIndex``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consumer.batch import UNSTORABLE, Classified, DeadLetter, RawMessage
from consumer.isolate import bisect_apply
from core.attribution import RecentIndex, attribute, window_start
from core.events import InteractionEvent
from core.impressions import Impression, impression_document
from core.settings import AttributionSettings
from storage.impressions import ImpressionStore

log = logging.getLogger(__name__)

# Metric label for a missing value (an impression served without a model or outside any experiment).
NONE_LABEL = "none"


def label(value: Any) -> str:
    return NONE_LABEL if value is None else str(value)


@dataclass
class StoredImpressions:
    inserted: set[str] = field(default_factory=set)  # impression ids new in MongoDB now
    # (surface, model_version, variant) → live impressions stored now (redeliveries not counted again).
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def store_impressions(store: ImpressionStore, batch: Classified, now: datetime) -> StoredImpressions:
    """Insert the batch's impressions (idempotent by ``_id``). The ones MongoDB cannot store leave
    ``batch.impressions`` and come back as dead letters; an outage raises (the batch is retried)."""
    out = StoredImpressions()
    if not batch.impressions:
        return out

    def insert(part: Sequence[tuple[RawMessage, Impression]]) -> None:
        out.inserted |= store.insert_impressions([impression_document(imp, now) for _, imp in part])

    failed = bisect_apply(batch.impressions, insert)
    if failed:
        bad = {(m.tp, m.offset) for (m, _), _ in failed}
        batch.impressions = [(m, i) for m, i in batch.impressions if (m.tp, m.offset) not in bad]
        for (m, imp), reason in failed:
            log.warning(
                "event=unstorable_impression impression_id=%a offset=%d error=%a",
                imp.impression_id,
                m.offset,
                reason,
            )
            out.dead_letters.append(
                DeadLetter(m, UNSTORABLE, f"MongoDB cannot store this impression: {reason}")
            )
    counted: set[str] = set()
    for _, imp in batch.impressions:
        # A shadow list was never shown: counting it would dilute every CTR computed from this.
        if imp.shadow:
            continue
        if imp.impression_id in out.inserted and imp.impression_id not in counted:
            counted.add(imp.impression_id)
            out.counts[(imp.surface, label(imp.model_version), label(imp.variant))] += 1
    return out


def attribute_events(
    store: ImpressionStore, settings: AttributionSettings, events: Sequence[InteractionEvent]
) -> dict[str, dict[str, Any]]:
    """event_id → the ``attribution`` sub-document, for the events that get one."""
    types = frozenset(settings.event_types)
    candidates = [e for e in events if str(e.event_type) in types]
    if not candidates:
        return {}
    named = {e.recommendation_id for e in candidates if e.recommendation_id is not None}
    by_id = store.impressions_by_id(named) if named else {}
    empty = RecentIndex()
    out: dict[str, dict[str, Any]] = {}
    unresolved: list[InteractionEvent] = []
    for event in candidates:
        if event.recommendation_id is not None and event.recommendation_id in by_id:
            # With no window candidates, only the by-id rule can answer here.
            found = attribute(event, by_id=by_id, recent=empty, window_s=settings.window_s, event_types=types)
            if found is not None:
                out[event.event_id] = found
                continue
        unresolved.append(event)
    if unresolved:
        # One query for every shopper left: their live impressions since the earliest event minus
        # the window (what rule 3 can reach), indexed by the (shopper, item) pairs asked about.
        since = window_start(min(e.timestamp for e in unresolved), settings.window_s)
        recent = store.recent_for_users({e.user_id for e in unresolved}, since)
        index = RecentIndex.build(recent, pairs={(e.user_id, e.item_id) for e in unresolved})
        for event in unresolved:
            found = attribute(event, by_id={}, recent=index, window_s=settings.window_s, event_types=types)
            if found is not None:
                out[event.event_id] = found
    return out
