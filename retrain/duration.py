"""Re-export: the duration parser moved to ``core.duration`` (the CLI's reports and serving need it too)."""

from __future__ import annotations

from core.duration import parse_duration

__all__ = ["parse_duration"]
