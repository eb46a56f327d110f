"""Deterministic identifiers, so replaying the same source twice stores nothing new."""

from __future__ import annotations

import hashlib


def deterministic_event_id(source: str, *parts: object) -> str:
    """A stable id for an event that arrived without one (e.g. a row of a public data set)."""
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode("utf-8"), digest_size=12).hexdigest()
    return f"{source}-{digest}"
