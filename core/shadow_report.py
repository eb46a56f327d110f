"""Shadow evaluation: would the candidate's list have held what the shopper wanted next? (pure)

Serving computes a candidate model's list beside some live requests and logs it, never shown, as a
shadow impression (``{request_id}:shadow``); the live list of the same request is ``{request_id}``.
For each shopper with a shadow impression, the first one followed by a click or a purchase of that
shopper within the attribution window (after the impression) gives one pair: was that next item in
the shadow list, was it in the live list. One pair per shopper keeps the pairs independent.

Reported: both hit rates with Wilson 95% intervals, and the paired difference shadow minus live
with a Wald 95% interval and the exact McNemar p-value (``core.online_stats.paired_difference``).
The live list was shown and may have caused the click, so this comparison leans towards the live
model: a shadow model that still matches or beats it is a strong candidate.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.online_report import Doc, aware
from core.online_stats import paired_difference, wilson_interval

# What counts as "the shopper's next choice".
NEXT_EVENT_TYPES: tuple[str, ...] = ("click", "purchase")


@dataclass(frozen=True)
class ShadowReport:
    since: datetime
    until: datetime
    window_s: float
    shadow_impressions: int
    shoppers: int
    pairs: int
    # Shadow impressions whose live list (same request) is not stored (expired, or not logged).
    missing_live: int
    shadow_hits: int
    live_hits: int
    only_shadow: int
    only_live: int
    shadow_versions: list[str]
    live_versions: list[str]

    def to_dict(self) -> dict[str, Any]:
        diff = paired_difference(self.only_shadow, self.only_live, self.pairs)

        def rate(hits: int) -> float | None:
            return hits / self.pairs if self.pairs else None

        def ci(hits: int) -> list[float] | None:
            interval = wilson_interval(hits, self.pairs)
            return None if interval is None else list(interval)

        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "window_s": self.window_s,
            "shadow_impressions": self.shadow_impressions,
            "shoppers": self.shoppers,
            "pairs": self.pairs,
            "missing_live": self.missing_live,
            "shadow_versions": self.shadow_versions,
            "live_versions": self.live_versions,
            "shadow_hits": self.shadow_hits,
            "live_hits": self.live_hits,
            "shadow_hit_rate": rate(self.shadow_hits),
            "shadow_hit_rate_ci95": ci(self.shadow_hits),
            "live_hit_rate": rate(self.live_hits),
            "live_hit_rate_ci95": ci(self.live_hits),
            "difference": None
            if diff is None
            else {"diff": diff.diff, "ci95": list(diff.ci95), "p_value": diff.p_value, "test": diff.test},
        }


def shadow_users(shadow_impressions: Iterable[Doc]) -> dict[str, list[Doc]]:
    """Shadow impressions of known shoppers, per shopper, oldest first."""
    by_user: dict[str, list[Doc]] = defaultdict(list)
    for imp in shadow_impressions:
        user_id = imp.get("user_id")
        if user_id is not None and imp.get("shadow"):
            by_user[str(user_id)].append(imp)
    for imps in by_user.values():
        imps.sort(key=lambda d: aware(d["ts"]))
    return dict(by_user)


def shadow_report(
    by_user: Mapping[str, list[Doc]],
    live_by_id: Mapping[str, Doc],
    next_events: Iterable[Doc],
    *,
    window_s: float,
    since: datetime,
    until: datetime,
) -> ShadowReport:
    """``by_user`` from ``shadow_users``; ``live_by_id`` the live impressions of the same requests
    (by ``_id``); ``next_events`` the shoppers' clicks and purchases since the first shadow list."""
    events: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for event in next_events:
        if event.get("event_type") in NEXT_EVENT_TYPES:
            events[str(event["user_id"])].append((aware(event["ts"]), str(event["item_id"])))
    for chosen in events.values():
        chosen.sort()
    window = timedelta(seconds=window_s)
    pairs = missing = shadow_hits = live_hits = only_shadow = only_live = 0
    shadow_versions: set[str] = set()
    live_versions: set[str] = set()
    for imps in by_user.values():
        shadow_versions |= {str(i["model_version"]) for i in imps if i.get("model_version") is not None}
    for user_id, imps in by_user.items():
        times = [t for t, _ in events.get(user_id, [])]
        for imp in imps:
            shown_at = aware(imp["ts"])
            at = bisect.bisect_right(times, shown_at)  # strictly after the list was computed
            if at == len(times) or times[at] > shown_at + window:
                continue
            live = live_by_id.get(str(imp.get("request_id")))
            if live is None:
                missing += 1
                continue
            item = events[user_id][at][1]
            in_shadow = item in set(imp.get("item_ids") or ())
            in_live = item in set(live.get("item_ids") or ())
            pairs += 1
            shadow_hits += in_shadow
            live_hits += in_live
            only_shadow += in_shadow and not in_live
            only_live += in_live and not in_shadow
            if live.get("model_version") is not None:
                live_versions.add(str(live["model_version"]))
            break  # one pair per shopper
    return ShadowReport(
        since=since,
        until=until,
        window_s=window_s,
        shadow_impressions=sum(len(i) for i in by_user.values()),
        shoppers=len(by_user),
        pairs=pairs,
        missing_live=missing,
        shadow_hits=shadow_hits,
        live_hits=live_hits,
        only_shadow=only_shadow,
        only_live=only_live,
        shadow_versions=sorted(shadow_versions),
        live_versions=sorted(live_versions),
    )
