"""Durations on the command line and in settings: ``30s``, ``15m``, ``2h``, ``1d`` (or bare seconds)."""

from __future__ import annotations

import re

from core.errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


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
