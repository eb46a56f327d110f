"""Simulated interactions held compactly in memory, and retrain's event source over them.

At the 1M-item serving run the simulator yields 10M interactions; as Python tuples they take about
2 GiB, as the arrays here about 250 MiB (codes into the distinct user, item and event-type strings,
values and timestamps). That difference is what lets the run train, index and publish a 1M-item model
on a 23.5 GiB machine that also runs the dev MongoDB server.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

# (user_id, item_id, event_type, value, ts_ms): ``Storefront.interactions()`` rows.
SimRow = tuple[str, str, str, float | None, int]


@dataclass(frozen=True)
class CompactEvents:
    """Events in time order: ``user[n]``, ``item[n]`` and ``kind[n]`` index the name lists; ``value`` is
    NaN where the event has none."""

    users: list[str]
    items: list[str]
    kinds: list[str]
    user: np.ndarray  # int32
    item: np.ndarray  # int32
    kind: np.ndarray  # uint8
    value: np.ndarray  # float64, NaN = no value
    ts_ms: np.ndarray  # int64

    @classmethod
    def from_rows(cls, rows: Iterable[SimRow]) -> CompactEvents:
        names: tuple[dict[str, int], dict[str, int], dict[str, int]] = ({}, {}, {})
        codes = (array("i"), array("i"), array("B"))
        values, stamps = array("d"), array("q")
        nan = float("nan")
        for user, item, kind, value, ts in rows:
            for key, seen, out in zip((user, item, kind), names, codes, strict=True):
                code = seen.get(key)
                if code is None:
                    code = seen[key] = len(seen)
                out.append(code)
            values.append(nan if value is None else float(value))
            stamps.append(ts)
        users, items, kinds = (list(seen) for seen in names)
        return cls(
            users=users,
            items=items,
            kinds=kinds,
            user=np.frombuffer(codes[0], dtype=np.int32),
            item=np.frombuffer(codes[1], dtype=np.int32),
            kind=np.frombuffer(codes[2], dtype=np.uint8),
            value=np.frombuffer(values, dtype=np.float64),
            ts_ms=np.frombuffer(stamps, dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.ts_ms)

    def item_counts(self) -> dict[str, int]:
        """Interactions per item id."""
        counts = np.bincount(self.item, minlength=len(self.items))
        return dict(zip(self.items, counts.tolist(), strict=True))


class MemoryEventSource:
    """``retrain.event_source.EventSource`` over ``CompactEvents`` (which are in time order)."""

    def __init__(self, events: CompactEvents) -> None:
        self.events = events

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        # ``fields`` is retrain's projection: these documents hold only what it reads already.
        ev = self.events
        keep = np.ones(len(ev), dtype=bool)
        if since is not None:
            keep &= ev.ts_ms >= since.timestamp() * 1000
        if until is not None:
            keep &= ev.ts_ms < until.timestamp() * 1000
        excluded = set(exclude_users)
        if excluded:
            codes = [n for n, user in enumerate(ev.users) if user in excluded]
            keep &= ~np.isin(ev.user, codes)
        rows = np.flatnonzero(keep)
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            yield [
                {
                    "user_id": ev.users[u],
                    "item_id": ev.items[i],
                    "event_type": ev.kinds[k],
                    "value": None if v != v else v,  # NaN: the event has no value
                    "ts_ms": ts,
                }
                for u, i, k, v, ts in zip(
                    ev.user[part].tolist(),
                    ev.item[part].tolist(),
                    ev.kind[part].tolist(),
                    ev.value[part].tolist(),
                    ev.ts_ms[part].tolist(),
                    strict=True,
                )
            ]

    def erased_users(self) -> set[str]:
        return set()

    def count_events(self) -> int:
        return len(self.events)
