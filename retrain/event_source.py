"""Where retraining reads its events (``storage.event_store``) and turning them into an ``EventTable``."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Protocol

import numpy as np

from core.event_table import EventTable

log = logging.getLogger(__name__)

# What retraining reads of a stored event: the projection the event store sends (``ts`` only as the
# fallback for a document without ``ts_ms``).
READ_FIELDS = ("user_id", "item_id", "event_type", "value", "ts_ms", "ts")
# Documents per cursor batch: one batch is decoded and folded at a time.
READ_BATCH = 5000
# The window is read as consecutive time slices of this length, one query each (retrain.read_slice_hours).
DEFAULT_READ_SLICE = timedelta(hours=6)


class EventSource(Protocol):
    """The part of ``storage.event_store.EventStore`` retraining uses."""

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
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


class _Vocabulary:
    """Strings to dense int32 codes in first-seen order: each distinct id is held once."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def encode(self, values: list[str]) -> np.ndarray:
        codes = self.codes
        # setdefault's default is evaluated first: a new string gets the next free code.
        return np.fromiter((codes.setdefault(v, len(codes)) for v in values), np.int32, len(values))

    def strings(self) -> np.ndarray:
        return np.array(list(self.codes), dtype=str) if self.codes else np.array([], dtype=str)


class EventColumns:
    """Folds batches of events into compact columns as they arrive: ids and types become int codes,
    values float64 and timestamps int64 (about 25 bytes an event), so no list of the window's documents
    is ever held. ``table()`` expands the codes into the ``EventTable`` the gate and trainer read.

    ``exclude_users`` is applied here too, so an adapter that ignores it can never leak erased users.
    """

    def __init__(self, exclude_users: set[str] | None = None) -> None:
        self.excluded = exclude_users or set()
        self.users, self.items, self.types = _Vocabulary(), _Vocabulary(), _Vocabulary()
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.skipped = 0
        self.count = 0
        # Every event handed to ``add``, kept or not (an erased user's, one without an item).
        self.seen = 0

    def add(self, events: Iterable[Any]) -> None:
        users: list[str] = []
        items: list[str] = []
        types: list[str] = []
        values: list[float] = []
        ts: list[int] = []
        excluded = self.excluded
        events = list(events)
        self.seen += len(events)
        for event in events:
            user = _field(event, "user_id")
            if user is None or str(user) in excluded:
                continue
            item, kind = _field(event, "item_id"), _field(event, "event_type")
            if item is None or kind is None:
                self.skipped += 1
                continue
            value = _field(event, "value")
            users.append(str(user))
            items.append(str(item))
            types.append(str(getattr(kind, "value", kind)))
            values.append(np.nan if value is None else float(value))
            ts.append(_ts_ms(event))
        if not users:
            return
        self._chunks.append(
            (
                self.users.encode(users),
                self.items.encode(items),
                self.types.encode(types).astype(np.int8 if len(self.types.codes) < 128 else np.int32),
                np.asarray(values, dtype=np.float64),
                np.asarray(ts, dtype=np.int64),
            )
        )
        self.count += len(users)

    def table(self) -> EventTable:
        if self.skipped:
            log.warning("events_skipped reason=missing_item_or_type count=%d", self.skipped)
        if not self._chunks:
            return empty_table()
        columns = [np.concatenate(parts) for parts in zip(*self._chunks, strict=True)]
        self._chunks = []
        user, item, kind, value, ts = columns
        return EventTable(
            user_id=self.users.strings()[user],
            item_id=self.items.strings()[item],
            event_type=self.types.strings()[kind],
            value=value,
            ts_ms=ts,
        )


def read_window(
    source: EventSource,
    since: datetime | None,
    until: datetime | None,
    exclude_users: set[str],
    slice_length: timedelta = DEFAULT_READ_SLICE,
) -> EventTable:
    """The window's events in ts order, streamed from the source in cursor batches of only
    ``READ_FIELDS``.

    The window is read as consecutive time slices, one query each: a server that gathers a query's
    whole result before its first batch (the dev MongoDB server does; a read of 3M events then timed
    out before any arrived) holds one slice at a time, and no cursor stays open for the whole read.
    On MongoDB each slice is a range of the ``ts`` index. A window with an open start is read
    backwards from its end until a slice comes back empty and the source has nothing older (a gap
    in the events is jumped over); a source that cannot say what is older is read in one query."""
    columns = EventColumns(exclude_users)

    def read(start: datetime | None, end: datetime | None) -> int:
        before = columns.seen
        for batch in source.iter_events(start, end, exclude_users, READ_BATCH, READ_FIELDS):
            columns.add(batch)
        return columns.seen - before

    latest_before = getattr(source, "latest_event_time_before", None)
    if until is None or slice_length <= timedelta(0) or (since is None and not callable(latest_before)):
        read(since, until)
        return columns.table()
    if since is not None:
        start = since
        while start < until:
            read(start, min(start + slice_length, until))
            start += slice_length
        return columns.table()
    assert callable(latest_before)
    end = until
    while True:
        start = end - slice_length
        if read(start, end) == 0:
            older = latest_before(start)
            if older is None:
                break
            start = older + timedelta(milliseconds=1)  # the next slice ends just after it: a gap jumped
        end = start
    table = columns.table()
    return subset(table, np.argsort(table.ts_ms, kind="stable"))


def to_event_table(events: Iterable[Any], exclude_users: set[str] | None = None) -> EventTable:
    """Events (dicts or objects with the stored field names) → parallel arrays, erased users dropped."""
    columns = EventColumns(exclude_users)
    it = iter(events)
    while chunk := list(islice(it, READ_BATCH)):
        columns.add(chunk)
    return columns.table()


def subset(table: EventTable, mask: np.ndarray) -> EventTable:
    return EventTable(
        user_id=table.user_id[mask],
        item_id=table.item_id[mask],
        event_type=table.event_type[mask],
        value=table.value[mask],
        ts_ms=table.ts_ms[mask],
    )
