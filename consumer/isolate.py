"""Second line of defence: find the records MongoDB cannot store instead of failing the batch.

The schema already rejects what BSON and MongoDB cannot hold, but a gap there (or a server limit
the schema does not know) must cost one record, not the partition. A *data* error (the driver
cannot encode a document, the server refuses one for its content) is isolated by bisecting the
batch: halves are written in order until the failing records stand alone; the rest is stored.
Anything else, notably ``PyMongoError`` for outages, propagates so the caller retries the batch.

Writes here are idempotent (inserts by ``_id``, ``$set`` upserts), so a half written before a
failure is written again harmlessly, and in-order halves keep the last update of an item last.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bson.errors import BSONError

from storage.event_store import EventStore, InsertResult

log = logging.getLogger(__name__)
T = TypeVar("T")

# What the driver raises for a document it cannot encode (``InvalidDocument``, ``DocumentTooLarge``
# and ``Unstorable`` are ``BSONError``s; integers beyond 64 bits are an ``OverflowError``; lone
# surrogates a ``UnicodeEncodeError``). Outages are ``PyMongoError``s and are not caught here.
DATA_ERRORS: tuple[type[BaseException], ...] = (BSONError, OverflowError, UnicodeError)


def describe(exc: BaseException) -> str:
    """The driver's message on one line, bounded (it goes into a Kafka header and a log line)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def bisect_apply(records: Sequence[T], apply: Callable[[Sequence[T]], None]) -> list[tuple[T, str]]:
    """Apply ``records``; on a data error split them in halves, in order, down to single records.

    Returns the records that fail alone, each with the driver's message. At most about
    2·log2(n) extra writes per bad record.
    """
    rejected: list[tuple[T, str]] = []

    def attempt(part: Sequence[T]) -> None:
        try:
            apply(part)
        except DATA_ERRORS as exc:
            if len(part) == 1:
                rejected.append((part[0], describe(exc)))
                return
            mid = len(part) // 2
            attempt(part[:mid])
            attempt(part[mid:])

    if records:
        attempt(records)
    return rejected


@dataclass
class Inserted:
    inserted: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)  # _id → why MongoDB refused it


def insert_isolating(store: EventStore, docs: list[dict[str, Any]]) -> Inserted:
    """Insert ``docs``; the ones MongoDB cannot store come back in ``rejected`` instead of raising."""
    results: list[InsertResult] = []
    failed = bisect_apply(docs, lambda part: results.append(store.insert_events(list(part))))
    out = Inserted()
    for result in results:
        out.inserted.update(result.inserted)
        out.rejected.update(result.rejected)
    for doc, reason in failed:
        out.rejected[str(doc["_id"])] = reason
    for eid, reason in out.rejected.items():
        log.warning("event=unstorable_event event_id=%a error=%a", eid, reason)
    return out
