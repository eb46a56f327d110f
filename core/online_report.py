"""Online metrics from what was shown and what shoppers did next (pure: documents in, rows out).

Inputs are stored documents: impressions (``core.impressions.impression_document``, one per served
list) and events that the consumer attributed to an impression (their ``attribution`` sub-document
names the ``impression_id`` and the shown ``position``; see README, *Measuring online*).

Definitions (per group of impressions):

* ``impressions``: served lists (live only; shadow lists were never shown).
* ``clicks``, ``add_to_carts``, ``purchases``: attributed events of that type.
* ``ctr``: impressions with at least one attributed click / impressions.
* ``add_to_cart_rate``: impressions with at least one attributed add-to-cart / impressions.
* ``conversion_rate``: impressions with at least one attributed purchase / impressions.
* each rate has a Wilson 95% interval (``*_ci95``, see ``core.online_stats``); ``users`` is the
  number of distinct shoppers among the impressions.

Grouped by ``model_version``, ``variant`` (an experiment's arm: rows carry ``experiment_id``),
``surface`` or ``position``. By position, a unit is one shown item: the impressions "at position p"
are the lists that showed an item at p, and a click counts at p when its attribution says p.

An event counts only when its impression is among the impressions read (the same window), so the
numerator never includes a list the denominator left out. Lists served in the last minutes may not
have had their clicks yet: read a window that ended a while ago, or expect rates a little low.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from core.online_stats import Interval, wilson_interval

GroupBy = Literal["model_version", "variant", "surface", "position"]
GROUPINGS: tuple[str, ...] = get_args(GroupBy)
Metric = Literal["ctr", "add_to_cart_rate", "conversion_rate"]
METRICS: tuple[str, ...] = get_args(Metric)
# Which attributed event type feeds which count and rate.
OUTCOMES: dict[str, tuple[str, Metric]] = {
    "click": ("clicks", "ctr"),
    "add_to_cart": ("add_to_carts", "add_to_cart_rate"),
    "purchase": ("purchases", "conversion_rate"),
}
Doc = Mapping[str, Any]
GroupKey = tuple[str | None, str | int | None]  # (experiment_id, group value)


def aware(ts: datetime) -> datetime:
    """MongoDB may hand back naive UTC datetimes; the reports compare aware ones."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


@dataclass
class Tally:
    """Counts of one group; ``hits[rate]`` = impressions (units) with at least one such event."""

    impressions: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(METRICS, 0))
    users: set[str] = field(default_factory=set)

    def add(self, user_id: str | None, outcomes: Mapping[str, int]) -> None:
        self.impressions += 1
        if user_id is not None:
            self.users.add(user_id)
        for event_type, n in outcomes.items():
            if event_type in OUTCOMES and n > 0:
                self.events[event_type] += n
                self.hits[OUTCOMES[event_type][1]] += 1

    def rate(self, metric: str) -> float | None:
        return self.hits[metric] / self.impressions if self.impressions else None

    def metrics(self) -> dict[str, Any]:
        """The JSON fields of a row: counts, rates and their intervals."""
        out: dict[str, Any] = {"impressions": self.impressions, "users": len(self.users)}
        for event_type, (count_name, _) in OUTCOMES.items():
            out[count_name] = self.events[event_type]
        for metric in METRICS:
            out[metric] = self.rate(metric)
            out[f"{metric}_ci95"] = _listed(wilson_interval(self.hits[metric], self.impressions))
        return out


def _listed(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


# -- attributed events → outcomes per impression (and per shown position) ----------------------------


@dataclass
class Outcomes:
    """Attributed events by impression id: ``by_list[id][type]`` and ``by_position[(id, p)][type]``."""

    by_list: dict[str, dict[str, int]] = field(default_factory=dict)
    by_position: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    events: int = 0

    @classmethod
    def of(cls, events: Iterable[Doc]) -> Outcomes:
        out = cls()
        for event in events:
            attribution = event.get("attribution")
            event_type = event.get("event_type")
            if not isinstance(attribution, Mapping) or event_type not in OUTCOMES:
                continue
            impression_id = attribution.get("impression_id")
            if not isinstance(impression_id, str):
                continue
            out.events += 1
            per_list = out.by_list.setdefault(impression_id, {})
            per_list[event_type] = per_list.get(event_type, 0) + 1
            position = attribution.get("position")
            if isinstance(position, int) and not isinstance(position, bool):
                per_item = out.by_position.setdefault((impression_id, position), {})
                per_item[event_type] = per_item.get(event_type, 0) + 1
        return out


# -- the online report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnlineReport:
    by: str
    since: datetime
    until: datetime
    rows: list[dict[str, Any]]
    impressions: int
    attributed_events: int
    # Attributed events whose impression is not among the ones read (older than ``since``).
    unmatched_events: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "impressions": self.impressions,
            "attributed_events": self.attributed_events,
            "unmatched_events": self.unmatched_events,
            "rows": self.rows,
        }


def _group_value(imp: Doc, by: str) -> GroupKey:
    if by == "variant":
        experiment_id = imp.get("experiment_id")
        return (experiment_id, imp.get("variant") if experiment_id is not None else None)
    return (None, imp.get(by))


def _sort_key(key: GroupKey) -> tuple[bool, str, bool, str | int]:
    experiment_id, value = key
    # Missing values last; positions in numeric order.
    return (experiment_id is None, experiment_id or "", value is None, value if value is not None else "")


def online_report(
    impressions: Iterable[Doc],
    events: Iterable[Doc],
    by: str,
    since: datetime,
    until: datetime,
) -> OnlineReport:
    """Rows of metrics per group (``by`` one of GROUPINGS); ``events`` are read first, so
    ``impressions`` may be a stream (memory grows with the events and the groups, not the lists)."""
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUPINGS)}")
    outcomes = Outcomes.of(events)
    tallies: dict[GroupKey, Tally] = defaultdict(Tally)
    count = matched = 0
    for imp in impressions:
        if imp.get("shadow"):
            continue
        impression_id = str(imp["_id"])
        count += 1
        matched += sum(outcomes.by_list.get(impression_id, {}).values())
        user_id = imp.get("user_id")
        if by == "position":
            for item in imp.get("items") or ():
                position = int(item["position"])
                tallies[(None, position)].add(
                    user_id, outcomes.by_position.get((impression_id, position), {})
                )
        else:
            tallies[_group_value(imp, by)].add(user_id, outcomes.by_list.get(impression_id, {}))
    rows = [
        {"group": value, "experiment_id": experiment_id, **tallies[(experiment_id, value)].metrics()}
        for experiment_id, value in sorted(tallies, key=_sort_key)
    ]
    return OnlineReport(by, since, until, rows, count, outcomes.events, outcomes.events - matched)
