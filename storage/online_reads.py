"""The online reports over the stores: what each report reads, handed to the pure computations.

``core.online_report``, ``core.experiment_report`` and ``core.shadow_report`` compute; this module
only reads the impression store and the event store (their ports, so the in-memory twins work the
same) for a time window. ``streamrec report ...``/``experiment ...`` and the admin endpoints call it;
neither computes anything itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from core.experiment_report import ExperimentReport, experiment_report
from core.experiments import Experiment
from core.online_report import OnlineReport, aware, online_report
from core.shadow_report import NEXT_EVENT_TYPES, ShadowReport, shadow_report, shadow_users

Doc = dict[str, Any]
# Live impressions looked up per query when pairing shadow lists with them.
IDS_PER_QUERY = 1000


class OnlineEventReads(Protocol):
    """The event store's reads for the reports (``storage.event_store.EventStore`` has them)."""

    def attributed_events(self, since: datetime, until: datetime | None = None) -> Iterator[Doc]: ...

    def events_of_users_since(
        self,
        user_ids: Iterable[str],
        since: datetime,
        until: datetime | None = None,
        event_types: Iterable[str] | None = None,
    ) -> Iterator[Doc]: ...


class ImpressionReads(Protocol):
    """The impression store's reads for the reports (``storage.impressions.ImpressionStore``)."""

    def impressions_by_id(self, ids: Iterable[str]) -> dict[str, Doc]: ...

    def impressions_since(self, since: datetime, *, shadow: bool | None = False) -> Iterator[Doc]: ...


def clamp_since(since: datetime, retention_s: float, now: datetime) -> datetime:
    """Impressions expire after ``retention_s``: reading from further back finds nothing more."""
    try:
        oldest = now - timedelta(seconds=retention_s)
    except OverflowError:
        return aware(since)
    return max(aware(since), oldest)


def _before(docs: Iterable[Doc], until: datetime) -> Iterator[Doc]:
    for doc in docs:
        if aware(doc["ts"]) < until:
            yield doc


def read_online_report(
    impressions: ImpressionReads,
    events: OnlineEventReads,
    *,
    since: datetime,
    by: str,
    until: datetime | None = None,
) -> OnlineReport:
    until = until or datetime.now(UTC)
    return online_report(
        _before(impressions.impressions_since(since, shadow=False), until),
        events.attributed_events(since, until),
        by,
        since,
        until,
    )


def experiment_window(experiment: Experiment, now: datetime | None = None) -> tuple[datetime, datetime]:
    """From its creation to its stop (or now)."""
    now = now or datetime.now(UTC)
    since = aware(experiment.created_at) if experiment.created_at else now
    until = aware(experiment.stopped_at) if experiment.stopped_at else now
    return since, max(since, until)


def read_experiment_report(
    experiment: Experiment,
    impressions: ImpressionReads,
    events: OnlineEventReads,
    *,
    metric: str = "ctr",
    now: datetime | None = None,
    retention_s: float | None = None,
) -> ExperimentReport:
    since, until = experiment_window(experiment, now)
    if retention_s is not None:
        since = clamp_since(since, retention_s, now or datetime.now(UTC))
    # Events are read to ``now``: a click that came in after the stop still belongs to a list shown before it.
    return experiment_report(
        experiment,
        _before(impressions.impressions_since(since, shadow=False), until),
        events.attributed_events(since),
        metric=metric,
        since=since,
        until=until,
    )


def read_shadow_report(
    impressions: ImpressionReads,
    events: OnlineEventReads,
    *,
    since: datetime,
    window_s: float,
    until: datetime | None = None,
) -> ShadowReport:
    until = until or datetime.now(UTC)
    by_user = shadow_users(_before(impressions.impressions_since(since, shadow=True), until))
    request_ids = sorted(
        {str(i["request_id"]) for imps in by_user.values() for i in imps if i.get("request_id")}
    )
    live: dict[str, Doc] = {}
    for start in range(0, len(request_ids), IDS_PER_QUERY):
        live.update(impressions.impressions_by_id(request_ids[start : start + IDS_PER_QUERY]))
    first = min((aware(imps[0]["ts"]) for imps in by_user.values()), default=until)
    next_events: Iterable[Doc] = ()
    if by_user:
        next_events = events.events_of_users_since(
            by_user, first, until + timedelta(seconds=window_s), NEXT_EVENT_TYPES
        )
    return shadow_report(by_user, live, next_events, window_s=window_s, since=since, until=until)
