"""Late attribution: crediting stored events to impressions that were stored after them (pure).

Impressions and events travel on two Kafka topics with no order between them: a click's batch can be
polled before the batch of the impression it acted on (serving lingers 50 ms before producing; a
backlog of one topic can be read first after a restart). So when a batch stores impressions, the
consumer asks for the stored events those impressions may explain (``late_scope``: the shoppers, the
items they were shown, the times the rules can reach) and recomputes each with ``core.attribution``'s
rules against every candidate impression now stored (``late_updates``). The result is what the rules
would have said had the impressions arrived first:

- an unattributed event gets its attribution (``new``);
- an event credited by window gets the impression its ``recommendation_id`` names (``upgraded``):
  by id wins over by window;
- an event credited by window to one impression gets a newer one that showed it the item within the
  window (``moved``): the rule credits the most recent.

An attribution by id is final (the storefront said which list it was), and a stored attribution is
never taken away (an impression that expired or was erased since does not uncredit the event).
Each update names the state it replaces (``expected``) so the store writes it only over that state:
applying the updates twice, or racing another consumer, changes nothing more.

What the scope leaves out (the cost of one indexed query per batch): an event named by id after more
than the window past its impression, or timed before it, and an event naming an anonymous list (no
shopper to look up) are credited only when the impression arrived first.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from core.attribution import BY_ID, Acted, Doc, RecentIndex, attribute, from_ms, to_ms
from core.impressions import Impression

Change = Literal["new", "upgraded", "moved"]


@dataclass(frozen=True)
class AttributionUpdate:
    """Set ``attribution`` on a stored event, only where its stored attribution is still ``expected``."""

    event_id: str
    event_type: str
    attribution: dict[str, Any]
    # The impression id of the window attribution replaced; None: the event had no attribution.
    expected: str | None

    @property
    def change(self) -> Change:
        if self.expected is None:
            return "new"
        return "upgraded" if self.attribution["by"] == BY_ID else "moved"


@dataclass(frozen=True)
class LateScope:
    """Which stored events a batch's impressions may credit: events of ``user_ids`` on ``item_ids``
    with ``since <= ts < until`` that are not attributed by id."""

    user_ids: frozenset[str]
    item_ids: frozenset[str]
    since: datetime
    until: datetime


def late_scope(impressions: Iterable[Impression], window_s: float) -> LateScope | None:
    """The scope of the live impressions of a shopper among ``impressions``; None when there are none
    (a shadow list never credits, an anonymous one is matched only by id at the event's insert)."""
    live = [i for i in impressions if not i.shadow and i.user_id is not None]
    if not live:
        return None
    first = min(to_ms(i.ts) for i in live)
    last = max(to_ms(i.ts) for i in live)
    return LateScope(
        user_ids=frozenset(str(i.user_id) for i in live),
        item_ids=frozenset(s.item_id for i in live for s in i.items),
        # An impression cannot explain an event before it; the window rule reaches ``window_s`` after
        # it, inclusive, in whole milliseconds like the rule: ts_ms <= last + window → ts < until.
        since=from_ms(first),
        until=from_ms(math.floor(last + window_s * 1000.0) + 1),
    )


def _rank(attribution: Mapping[str, Any]) -> tuple[int, str]:
    """The window rule's order: newest impression first, ties to the highest impression id."""
    return to_ms(attribution["impression_ts"]), str(attribution["impression_id"])


def late_updates(
    events: Iterable[Doc],
    *,
    by_id: Mapping[str, Doc],
    recent: RecentIndex,
    window_s: float,
    event_types: Collection[str],
) -> list[AttributionUpdate]:
    """The attribution changes of stored ``events`` (documents with ``_id`` and their ``attribution``
    if any) against the candidate impressions: ``by_id`` holds the stored impressions among their
    ``recommendation_id``s, ``recent`` their shoppers' live impressions since the earliest event time
    minus the window (as for ``core.attribution.attribute``)."""
    out: list[AttributionUpdate] = []
    for doc in events:
        current = doc.get("attribution")
        if current is not None and current.get("by") == BY_ID:
            continue  # final
        found = attribute(
            Acted.of_document(doc), by_id=by_id, recent=recent, window_s=window_s, event_types=event_types
        )
        if found is None:
            continue  # nothing credits it (yet); a stored attribution is never taken away
        if current is not None:
            if found["by"] != BY_ID and _rank(found) <= _rank(current):
                continue  # the same impression, or an older one (the stored one expired since)
            expected: str | None = str(current["impression_id"])
        else:
            expected = None
        out.append(AttributionUpdate(str(doc["_id"]), str(doc["event_type"]), found, expected))
    return out
