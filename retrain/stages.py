"""Wall time and peak resident memory of each stage of a retrain run (its own run report).

The peak of a stage is the kernel's high-water mark of resident memory (``VmHWM``) over that stage: on
Linux it is reset at each stage's start (``/proc/self/clear_refs``, value 5), so each figure belongs to
its stage alone. Where the reset is not possible (another OS, a locked-down /proc) the figure is the
process's peak so far (``ru_maxrss``), which only ever grows; ``rss_per_stage`` says which one it is.
The run's peak is the largest stage peak (the reset also lowers ``ru_maxrss``, so that is not asked).
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1024 * 1024


def _status_kib(name: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _maxrss_bytes() -> int:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _reset_peak() -> bool:
    """Start a new high-water mark at the current resident size; False where Linux does not let us."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


@dataclass
class StageFigures:
    wall_s: float
    peak_rss_bytes: int

    def to_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall_s, 3), "peak_rss_mib": round(self.peak_rss_bytes / MIB, 1)}


@dataclass
class StageClock:
    """``with clock.stage("train"): ...`` records that stage; a stage entered twice adds up (its peak
    is the larger one)."""

    stages: dict[str, StageFigures] = field(default_factory=dict)
    rss_per_stage: bool = True

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        per_stage = _reset_peak()
        self.rss_per_stage = self.rss_per_stage and per_stage
        started = time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - started
            hwm = _status_kib("VmHWM") if per_stage else None
            peak = hwm * 1024 if hwm is not None else _maxrss_bytes()
            before = self.stages.get(name)
            if before is not None:
                wall += before.wall_s
                peak = max(peak, before.peak_rss_bytes)
            self.stages[name] = StageFigures(wall, peak)
            log.info("retrain_stage stage=%s wall_s=%.2f peak_rss_mib=%.0f", name, wall, peak / MIB)

    @property
    def peak_rss_bytes(self) -> int:
        return max((s.peak_rss_bytes for s in self.stages.values()), default=0)

    def wall_s(self, *names: str) -> float:
        return sum(self.stages[n].wall_s for n in names if n in self.stages)

    def report(self) -> dict[str, Any]:
        return {
            "stages": {name: figures.to_dict() for name, figures in self.stages.items()},
            "peak_rss_mib": round(self.peak_rss_bytes / MIB, 1),
            "rss_per_stage": self.rss_per_stage,
        }
