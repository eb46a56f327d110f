"""Trending: items whose recent rate of interactions is high against their longer-term rate. Pure.

The consumer keeps weighted interaction counts per time bucket (``core.keys`` ``pop:<window>:<bucket>``)
and readers merge a window's live buckets with a decay weight per bucket (``PopularityWindow``).
A merged score is therefore a *decayed* count, and dividing it by the window's nominal length would
understate the rate of a window whose old buckets weigh little. ``exposure_s`` is the same decayed sum
taken over time instead of events (each live bucket's covered seconds times its weight), so
``score / exposure_s`` is an events-per-second rate under exactly the weighting the score used: a
steady stream of r events a second gives r in both windows, whatever their lengths and half-lives.

Growth of an item = short rate / (long rate + prior rate), where the prior is ``prior_count`` events
spread over the long window's exposure: it keeps an item with almost no history from reading as
infinite growth off two events. Items below ``min_count`` (decayed, weighted) in the short window
are not trending at all, however steep their growth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.keys import PopularityWindow


def exposure_s(window: PopularityWindow, now_s: float) -> float:
    """Seconds covered by ``window``'s live buckets at ``now_s``, each weighted as its events are."""
    total = 0.0
    for start in window.live_buckets(now_s):
        # A reader merges every live bucket whole, so the first one counts from its own start (older
        # than now - length), and the current one only up to now.
        covered = min(start + window.bucket_s, now_s) - start
        if covered > 0:
            total += covered * window.bucket_weight(start, now_s)
    return total


@dataclass(frozen=True)
class TrendScore:
    item_id: str
    growth: float
    # Both rates in weighted events per hour, as the reason shows them.
    short_per_h: float
    long_per_h: float
    short_count: float


def trending(
    short: Sequence[tuple[str, float]],
    long: Mapping[str, float],
    *,
    short_exposure_s: float,
    long_exposure_s: float,
    min_count: float,
    prior_count: float,
) -> list[TrendScore]:
    """Items of ``short`` (the short window's scores) with at least ``min_count``, by growth, highest
    first (ties: the larger short count, then the item id). ``long`` holds the long window's score
    of each item; a missing one counts as 0."""
    if short_exposure_s <= 0 or long_exposure_s <= 0:
        return []
    out: list[TrendScore] = []
    prior_rate = prior_count / long_exposure_s
    for item_id, count in short:
        if count < min_count:
            continue
        short_rate = count / short_exposure_s
        long_rate = max(long.get(item_id, 0.0), 0.0) / long_exposure_s
        denominator = long_rate + prior_rate
        if denominator <= 0:
            # No long-window score and no prior (prior_count 0): growth is undefined, not infinite.
            continue
        growth = short_rate / denominator
        out.append(TrendScore(item_id, growth, short_rate * 3600.0, long_rate * 3600.0, count))
    out.sort(key=lambda t: (-t.growth, -t.short_count, t.item_id))
    return out
