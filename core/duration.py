"""Durations and "since" times on the command line, in settings and in query parameters.

``parse_duration``: ``30s``, ``15m``, ``2h``, ``1d`` (or bare seconds). ``parse_since``: an ISO-8601
time or a duration before now (``--since 24h``). Both raise ``ConfigError`` with a message to act on.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from core.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
# A duration as a query parameter pattern (OpenAPI): what ``parse_duration`` accepts, without spaces.
DURATION_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?[smhd]?$"


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a missing unit means seconds. Zero and negative durations are refused."""
    match = _PATTERN.match(text or "")
    if match is None:
        raise ConfigError(
            f"duration {text!r} is not understood; use a number and a unit, e.g. 30s, 15m, 2h, 1d"
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} must be longer than zero")
    return seconds


def parse_window(text: str) -> float:
    """Seconds in a ``since`` query parameter: exactly the strings ``DURATION_PATTERN`` admits as a
    JSON-schema validator reads it (Python's ``re.search``, so a trailing newline passes too), zero
    included (an empty window), so the server accepts what its OpenAPI document promises."""
    match = _PATTERN.match(text) if re.search(DURATION_PATTERN, text) else None
    if match is None:
        raise ConfigError(f"duration {text!r} is not understood; use a number and a unit, e.g. 30m, 24h, 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """An ISO-8601 time (UTC when it has no offset) or a duration before ``now``; raises ConfigError."""
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        try:
            seconds = parse_duration(text)
        except ConfigError:
            raise ConfigError(
                f"--since {text!r} is neither an ISO-8601 time (2026-01-31T12:00:00Z) "
                "nor a duration (30m, 2h, 1d)"
            ) from None
        return since_ago(seconds, now)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def since_ago(seconds: float, now: datetime | None = None) -> datetime:
    """``now`` minus ``seconds``; a duration reaching before year 1 means "from the beginning"."""
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=seconds)
    except OverflowError:
        return datetime.min.replace(tzinfo=UTC)
