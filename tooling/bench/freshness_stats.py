"""Pure parts of `streamrec bench freshness`: percentiles over samples of which some timed out, and
whether a recommendations answer reflects the shopper's event.

A sample that times out is not dropped: dropping it would make the percentiles look better exactly
when freshness is worst. It is right-censored: all we know is that the delay was at least the
timeout, so it enters the percentiles at the timeout value, and a percentile that lands on such a
sample is reported as a lower bound (``censored``), never as a measured value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The figures every report carries, by name; "max" is the 1.0 quantile.
QUANTILES: dict[str, float] = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "max": 1.0}


@dataclass(frozen=True)
class Percentile:
    value_s: float
    censored: bool  # the value is a timed-out sample: the true figure is at least this


def nearest_rank(n: int, q: float) -> int:
    """0-based index of the ``q`` quantile among ``n`` sorted values (nearest-rank method).

    The smallest value with at least ``q * n`` of the samples at or below it: p95 of 200 samples is
    the 190th, so ten samples lie above it. It never interpolates and never rounds down to a faster
    sample than the definition allows.
    """
    if n <= 0:
        raise ValueError("no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    return min(n - 1, max(0, math.ceil(q * n) - 1))


def censored_percentiles(
    measured_s: Sequence[float], censored: int, timeout_s: float
) -> dict[str, Percentile]:
    """p50, p95, p99 and max over the measured delays plus ``censored`` samples at ``timeout_s``.

    A measured delay above the timeout is a caller error: the sampler counts such a sample as timed
    out, so that censored samples always sort after every measured one.
    """
    if censored < 0:
        raise ValueError("censored must be >= 0")
    if timeout_s <= 0:
        raise ValueError("timeout_s must be positive")
    too_slow = [d for d in measured_s if not 0.0 <= d <= timeout_s]
    if too_slow:
        raise ValueError(f"measured delays must lie in [0, timeout_s={timeout_s}]: {too_slow[:3]}")
    ordered = sorted(measured_s)
    n = len(ordered) + censored
    out: dict[str, Percentile] = {}
    for name, q in QUANTILES.items():
        i = nearest_rank(n, q)
        out[name] = Percentile(timeout_s, True) if i >= len(ordered) else Percentile(ordered[i], False)
    return out


def freshness_figures(
    measured_s: Sequence[float], censored: int, timeout_s: float, target_p95_s: float
) -> dict[str, Any]:
    """The report's figures: seconds (the keys the report always had) and milliseconds, which of
    them are lower bounds, and whether the p95 target is met (a censored p95 never meets it)."""
    pcts = censored_percentiles(measured_s, censored, timeout_s)
    p95 = pcts["p95"]
    figures: dict[str, Any] = {f"{name}_s": round(p.value_s, 4) for name, p in pcts.items()}
    figures |= {f"{name}_ms": round(p.value_s * 1000, 1) for name, p in pcts.items()}
    return {
        **figures,
        "samples": len(measured_s) + censored,
        "measured": len(measured_s),
        "censored": censored,
        "timeouts": censored,  # the key earlier reports used
        "timeout_s": timeout_s,
        "censored_figures": [name for name, p in pcts.items() if p.censored],
        "target_p95_s": target_p95_s,
        "target_p95_ms": round(target_p95_s * 1000, 1),
        "p95_target_met": (not p95.censored) and p95.value_s <= target_p95_s,
    }


def reflects(items: Sequence[Mapping[str, Any]], clicked: str) -> bool:
    """Whether a fresh shopper's recommendations were ranked from their event on ``clicked``.

    Before the consumer applies it the shopper has no history, so every item's reason is
    ``popular``. After, the session folded from that one event ranks the list: reason ``session``,
    or ``similar_to`` naming the clicked item. A mere change of the list is not evidence: under
    background traffic the popularity lists change on their own.
    """
    for item in items:
        reason = item.get("reason") or {}
        kind = reason.get("kind")
        if kind == "session" or (kind == "similar_to" and reason.get("item_id") == clicked):
            return True
    return False
