"""Comparable snapshots of realtime state, shared by the Redis adapter and the in-memory twin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.keys import WINDOWS, Keys

Snapshot = dict[str, Any]
SCORE_DIGITS = 6


def txt(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def empty_snapshot() -> Snapshot:
    return {
        "recent": {},
        "purchased": {},
        "seen": {},
        "pop": {"all": {}, **{w: {} for w in WINDOWS}},
        "items": {},
        "categories": {},
        "unavailable": [],
    }


@dataclass
class SnapshotBuilder:
    """Turns (key, value) pairs into a ``Snapshot``; ``value`` already read with the key's type."""

    prefix: str
    now_s: float
    snap: Snapshot = field(default_factory=empty_snapshot)

    def kind(self, key: str) -> str | None:
        """The data type a key needs to be read as, or None to skip it."""
        keys = Keys(self.prefix)
        user = keys.split_user(key)
        if user is not None:
            return {"recent": "zset", "purchased": "set", "seen": "set"}.get(user[1])
        rest = keys.shared_rest(key)
        if rest is None:
            return None
        if rest.startswith("pop:"):
            parts = rest.split(":")
            if parts[1] == "all":
                return "zset"
            win = WINDOWS.get(parts[1])
            if win is None or len(parts) != 3 or not parts[2].isdigit():
                return None
            first_live = win.bucket_start(self.now_s - win.length_s)
            return "zset" if int(parts[2]) >= first_live else None
        if rest.startswith("item:"):
            return "hash"
        if rest.startswith("cat:") or rest == "unavailable":
            return "set"
        return None

    def add(self, key: str, value: Any) -> None:
        """``key`` is one ``kind`` named a type for."""
        keys = Keys(self.prefix)
        snap = self.snap
        user = keys.split_user(key)
        if user is not None:
            uid, what = user
            if what == "recent":
                snap["recent"][uid] = sorted(([m, s] for m, s in value.items()), key=lambda p: (-p[1], p[0]))
            elif value:
                snap[what][uid] = sorted(value)
            return
        rest = keys.shared_rest(key) or ""
        if rest.startswith("pop:"):
            parts = rest.split(":")
            scores = {m: round(s, SCORE_DIGITS) for m, s in value.items()}
            if parts[1] == "all":
                snap["pop"]["all"] = scores
            elif scores:
                snap["pop"][parts[1]][int(parts[2])] = scores
        elif rest.startswith("item:"):
            snap["items"][rest[len("item:") :]] = dict(value)
        elif rest.startswith("cat:"):
            if value:
                snap["categories"][rest[len("cat:") :]] = sorted(value)
        elif rest == "unavailable":
            snap["unavailable"] = sorted(value)
