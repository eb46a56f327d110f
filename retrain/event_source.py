"""Where retraining reads its events (``storage.event_store``) and turning them into an ``EventTable``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from core.event_table import EventTable

log = logging.getLogger(__name__)

_FIELDS = ("user_id", "item_id", "event_type", "value", "ts_ms")


class EventSource(Protocol):
    """The part of ``storage.event_store.EventStore`` retraining uses."""

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
    ) -> Iterator[list[dict[str, Any]]]: ...

    def erased_users(self) -> set[str]: ...

    def count_events(self) -> int: ...


def _field(event: Any, name: str) -> Any:
    if isinstance(event, dict):
        return event.get(name)
    return getattr(event, name, None)


def _ts_ms(event: Any) -> int:
    ts_ms = _field(event, "ts_ms")
    if ts_ms is not None:
        return int(ts_ms)
    ts = _field(event, "ts") or _field(event, "timestamp")
    if isinstance(ts, datetime):
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        return int(ts.timestamp() * 1000)
    raise ValueError(f"event {_field(event, '_id') or _field(event, 'event_id')!r} has no timestamp")


def empty_table() -> EventTable:
    return EventTable(
        user_id=np.array([], dtype=str),
        item_id=np.array([], dtype=str),
        event_type=np.array([], dtype=str),
        value=np.array([], dtype=np.float64),
        ts_ms=np.array([], dtype=np.int64),
    )


def read_window(
    source: EventSource, since: datetime | None, until: datetime | None, exclude_users: set[str]
) -> EventTable:
    events = (e for batch in source.iter_events(since, until, exclude_users) for e in batch)
    return to_event_table(events, exclude_users)


def to_event_table(events: Iterable[Any], exclude_users: set[str] | None = None) -> EventTable:
    """Events (dicts or objects with the stored field names) → parallel arrays, erased users dropped.

    ``exclude_users`` is applied again here so an adapter that ignores it can never leak erased users.
    """
    excluded = exclude_users or set()
    users: list[str] = []
    items: list[str] = []
    types: list[str] = []
    values: list[float] = []
    ts: list[int] = []
    skipped = 0
    for event in events:
        user = _field(event, "user_id")
        if user is None or str(user) in excluded:
            continue
        item, kind = _field(event, "item_id"), _field(event, "event_type")
        if item is None or kind is None:
            skipped += 1
            continue
        value = _field(event, "value")
        users.append(str(user))
        items.append(str(item))
        types.append(str(getattr(kind, "value", kind)))
        values.append(np.nan if value is None else float(value))
        ts.append(_ts_ms(event))
    if skipped:
        log.warning("events_skipped reason=missing_item_or_type count=%d", skipped)
    if not users:
        return empty_table()
    return EventTable(
        user_id=np.array(users, dtype=str),
        item_id=np.array(items, dtype=str),
        event_type=np.array(types, dtype=str),
        value=np.array(values, dtype=np.float64),
        ts_ms=np.array(ts, dtype=np.int64),
    )


def subset(table: EventTable, mask: np.ndarray) -> EventTable:
    return EventTable(
        user_id=table.user_id[mask],
        item_id=table.item_id[mask],
        event_type=table.event_type[mask],
        value=table.value[mask],
        ts_ms=table.ts_ms[mask],
    )
