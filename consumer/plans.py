"""Pure functions: interaction events and item updates → Redis write plans (lists of ``Op``).

The same functions serve live consumption and ``rebuild-cache``, which is what makes a rebuilt
Redis equal to a live one. Every effect is order-independent across batches (sets, sums, a top-N
by (score, member)), so replaying events sorted by time gives the state live consumption built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from math import gcd
from typing import Any, NamedTuple, cast

from core.event_weights import event_weight
from core.events import EventType, InteractionEvent, ItemUpdate
from core.keys import WINDOWS, Keys, PopularityWindow
from core.realtime_ops import Op
from core.recent import recent_member
from core.settings import EventWeights

ITEM_HASH_FIELDS = ("title", "category", "price", "available")
# The stored item's first-seen time (MongoDB ``items``; set when the item is created, never after).
ADDED_AT = "added_at"
_PURCHASE = EventType.PURCHASE.value
_RATE = EventType.RATE.value
# Ops and planned events are built through tuple.__new__: a named tuple's own constructor is a
# Python-level function, and the planner builds several ops per event (CPU per event, BENCHMARKS.md).
_op = cast(Callable[[tuple[str, str, tuple[Any, ...]]], Op], partial(tuple.__new__, Op))
# Every window's bucket size is a multiple of this: events within one slot share their buckets.
_SLOT_S = gcd(*(win.bucket_s for win in WINDOWS.values()))


class PlannedEvent(NamedTuple):
    """The fields of an event that Redis state depends on (a named tuple: one is built per event)."""

    event_id: str
    user_id: str
    item_id: str
    event_type: str
    ts_ms: int
    value: float | None = None

    @classmethod
    def from_event(cls, event: InteractionEvent) -> PlannedEvent:
        # str() of the StrEnum is its value, without the slower enum descriptor behind ``.value``.
        etype = str(event.event_type)
        return _planned((event.event_id, event.user_id, event.item_id, etype, event.ts_ms, event.value))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PlannedEvent:
        ts_ms = doc.get("ts_ms")
        if ts_ms is None:
            ts: datetime = doc["ts"]
            ts_ms = int(ts.timestamp() * 1000)
        value = doc.get("value")
        return cls(
            str(doc.get("event_id", doc.get("_id"))),
            doc["user_id"],
            doc["item_id"],
            doc["event_type"],
            int(ts_ms),
            None if value is None else float(value),
        )


_PlannedFields = tuple[str, str, str, str, int, float | None]
_planned = cast(Callable[[_PlannedFields], PlannedEvent], partial(tuple.__new__, PlannedEvent))


# (window name, window, first live bucket start at the planning clock)
Cutoffs = list[tuple[str, PopularityWindow, int]]


def live_cutoffs(now_s: float) -> Cutoffs:
    """Each window's first bucket still live at ``now_s``: computed once per batch, not per event."""
    return [(name, win, win.bucket_start(now_s - win.length_s)) for name, win in WINDOWS.items()]


def bucket_writes(ts_ms: int, now_s: float, cutoffs: Cutoffs | None = None) -> list[tuple[str, int, int]]:
    """(window, bucket_start_s, expire_at_s) for each window whose live range still holds the event.

    An event "older than its window" is one whose bucket no longer overlaps [now - length, now]:
    the bucket test (not the raw timestamp) keeps live and rebuilt buckets identical, because a
    reader at time ``now`` sums exactly ``PopularityWindow.live_buckets(now)``.
    """
    ts_s = ts_ms / 1000.0
    out: list[tuple[str, int, int]] = []
    for name, win, first in cutoffs if cutoffs is not None else live_cutoffs(now_s):
        start = int(ts_s // win.bucket_s) * win.bucket_s
        if start >= first:
            out.append((name, start, start + win.bucket_s + win.length_s))
    return out


def plan_events(
    keys: Keys,
    events: Iterable[PlannedEvent],
    *,
    weights: EventWeights,
    recent_max: int,
    now_s: float,
) -> list[Op]:
    """Redis ops for a batch of events whose effects are to be applied (in arrival order)."""
    ops: list[Op] = []
    # A batch's events share few shoppers and fewer popularity buckets: each key is built once.
    users: dict[str, tuple[str, str]] = {}
    buckets: dict[tuple[str, int], str] = {}
    pop: dict[tuple[str, str], float] = {}
    expires: dict[str, int] = {}
    per_type: dict[str, float] = {}
    # The bucket writes of each _SLOT_S slot of event time: a batch's events fall in few slots. The
    # slot is floored from the same float as bucket_writes floors, so within one slot every
    # window's bucket start is the same (each bucket size is a multiple of the slot's).
    slots: dict[float, list[tuple[str, int, int]]] = {}
    pop_all = keys.pop_all()
    cutoffs = live_cutoffs(now_s)
    for ev in events:
        user_keys = users.get(ev.user_id)
        if user_keys is None:
            user_keys = users[ev.user_id] = (keys.recent(ev.user_id), keys.seen(ev.user_id))
        item = ev.item_id
        ts_ms = ev.ts_ms
        member = recent_member(ev.event_id, item, ev.event_type, ev.value)
        ops.append(_op(("zadd", user_keys[0], (member, ts_ms))))
        ops.append(_op(("sadd", user_keys[1], (item,))))
        if ev.event_type == _PURCHASE:
            ops.append(_op(("sadd", keys.purchased(ev.user_id), (item,))))
        weight = per_type.get(ev.event_type)
        if weight is None:
            weight = event_weight(ev.event_type, ev.value, weights)
            if ev.event_type != _RATE:  # only a rating's weight depends on its value
                per_type[ev.event_type] = weight
        pop[(pop_all, item)] = pop.get((pop_all, item), 0.0) + weight
        slot = (ts_ms / 1000.0) // _SLOT_S
        writes = slots.get(slot)
        if writes is None:
            writes = slots[slot] = bucket_writes(ts_ms, now_s, cutoffs)
        for window, start, expire_at in writes:
            bucket = buckets.get((window, start))
            if bucket is None:
                bucket = buckets[(window, start)] = keys.pop_bucket(window, start)
                expires[bucket] = expire_at
            pop[(bucket, item)] = pop.get((bucket, item), 0.0) + weight
    ops.extend(_op(("zincrby", key, (item, weight))) for (key, item), weight in pop.items())
    ops.extend(_op(("expireat", key, (at,))) for key, at in expires.items())
    for uid, (recent_key, _) in users.items():
        # Keep the newest recent_max members: ranks 0.. are the lowest scores.
        ops.append(_op(("zremrangebyrank", recent_key, (0, -(recent_max + 1)))))
        ops.append(_op(("incr", keys.marker(uid), ())))
    return ops


def _encode(field: str, value: Any) -> str:
    if field == "available":
        return "1" if value else "0"
    if field == "price":
        return repr(float(value))
    return str(value)


def plan_item_update(
    keys: Keys, fields: Mapping[str, Any], item_id: str, current_category: str | None
) -> list[Op]:
    """Ops mirroring one partial item update; ``current_category`` is the mirror's category before it."""
    ops: list[Op] = []
    present = {f: fields[f] for f in ITEM_HASH_FIELDS if fields.get(f) is not None}
    if present:
        ops.append(Op("hset", keys.item(item_id), tuple((f, _encode(f, v)) for f, v in present.items())))
    category = present.get("category")
    if category is not None and category != current_category:
        if current_category is not None:
            ops.append(Op("srem", keys.category(current_category), (item_id,)))
        ops.append(Op("sadd", keys.category(category), (item_id,)))
    if "available" in present:
        ops.append(Op("srem" if present["available"] else "sadd", keys.unavailable(), (item_id,)))
        # After the set change: serving replicas poll this counter and refetch the set at once.
        ops.append(Op("incr", keys.catalog_version(), ()))
    return ops


def added_ms(doc: Mapping[str, Any]) -> int | None:
    """A stored item's first-seen time in epoch ms; None for items stored before it was recorded."""
    value = doc.get(ADDED_AT)
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:  # MongoDB clients without tz_aware hand back naive UTC
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def plan_added(keys: Keys, item_id: str, ms: int | None) -> list[Op]:
    """The item's place in ``added``: a fixed score (the stored time), so applying it again is harmless."""
    return [] if ms is None else [Op("zadd", keys.added(), (item_id, ms))]


def plan_item_updates(
    keys: Keys,
    updates: Iterable[ItemUpdate],
    current_categories: Mapping[str, str | None],
    added: Mapping[str, int] | None = None,
) -> list[Op]:
    """Ops for a batch of item updates in order; a category moved earlier in the batch is followed.
    ``added``: first-seen ms of the items that have one (read from MongoDB after storing them)."""
    categories = dict(current_categories)
    updates = list(updates)
    ops: list[Op] = []
    for update in updates:
        fields = update.model_dump(exclude_none=True)
        ops.extend(plan_item_update(keys, fields, update.item_id, categories.get(update.item_id)))
        if update.category is not None:
            categories[update.item_id] = update.category
    for item_id in dict.fromkeys(u.item_id for u in updates):
        ops.extend(plan_added(keys, item_id, (added or {}).get(item_id)))
    return ops


def plan_catalog_item(keys: Keys, doc: Mapping[str, Any]) -> list[Op]:
    """Ops recreating one item's mirror from its stored document (rebuild starts from empty)."""
    item_id = str(doc.get("item_id", doc.get("_id")))
    return [*plan_item_update(keys, doc, item_id, None), *plan_added(keys, item_id, added_ms(doc))]
