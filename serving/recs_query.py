"""The parameters of one recommendations request, and the "recently viewed" list's shape."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.recent import RecentEvent
from serving.merchandising import Merch


@dataclass(frozen=True)
class RecsQuery:
    user_id: str
    k: int
    exclude: frozenset[str]
    category: str | None
    # None: the exclusion policy decides (serving.exclusion.recommendations).
    include_purchased: bool | None = None
    exclude_seen: bool | None = None
    # The request's item filters with the rules it is answered under; None: the active rules only.
    merch: Merch | None = None

    def cache_params(self, variant: str | None = None, merch_key: str | None = None) -> str:
        """Stable, short key part: every parameter that changes the answer (``merch_key``: the rules
        version and filter, ``Merch.cache_key``), and the experiment variant that computed it
        (``Arm.cache_key``), so one variant's list never reaches another."""
        excl = ",".join(sorted(self.exclude))
        digest = hashlib.blake2b(excl.encode(), digest_size=8).hexdigest() if excl else "-"
        params = (
            f"k{self.k}:p{_flag(self.include_purchased)}:s{_flag(self.exclude_seen)}"
            f":x{digest}:c{self.category or ''}"
        )
        if merch_key is not None:
            params = f"{params}:m{merch_key}"
        return params if variant is None else f"{params}:v{variant}"


def _flag(value: bool | None) -> str:
    return "-" if value is None else str(int(value))


def recent_distinct(events: Sequence[RecentEvent], limit: int) -> list[dict[str, Any]]:
    """One entry per item, at its newest interaction (``events`` is newest first)."""
    out: list[dict[str, Any]] = []
    taken: set[str] = set()
    for ev in events:
        if ev.item_id in taken:
            continue
        taken.add(ev.item_id)
        stamp = datetime.fromtimestamp(ev.ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
        out.append(
            {"item_id": ev.item_id, "event_type": ev.event_type, "ts_ms": ev.ts_ms, "timestamp": stamp}
        )
        if len(out) == limit:
            break
    return out
