"""What `streamrec demo` streams: a real data set when one is at hand, else the storefront simulator.

MovieLens gets a catalog built from the ``movies.csv`` beside ``ratings.csv`` (titles and the first
genre as category) so the demo can show "Toy Story (1995)" instead of "1". Every event keeps the
deterministic id its reader gives it, so running the demo twice stores nothing new.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.errors import StreamrecError
from core.events import InteractionEvent, ItemUpdate, ParseError, validate_item_update
from tooling.producers.replay_sources import SourceData, load_source, resolve_path

DATASETS = ("movielens", "taobao", "simulate")
# `--exit` (the `make demo DEMO_ARGS=--exit` check) streams at most this many real events: the whole of
# MovieLens ml-latest-small (100,836), whose 610 users all get judged by the quality table, while a larger
# file stays within about 5 minutes on 2 cores (the dev MongoDB stores about 1,000 events/s).
EXIT_EVENT_CAP = 120_000
SIMULATE_DEFAULT_EVENTS = 50_000


class DemoDataError(StreamrecError):
    """The demo's data set cannot be chosen or read."""


@dataclass
class DemoData:
    name: str  # movielens | taobao | simulate
    description: str
    events: list[InteractionEvent]  # in timestamp order
    items: list[ItemUpdate]
    rejected: int = 0

    def titles(self) -> dict[str, str]:
        return {u.item_id: u.title for u in self.items if u.title}


def choose_dataset(dataset: str | None, path: Path | None, data_dir: Path | None = None) -> str:
    """As asked; else MovieLens if --path or the shared data holds it; else the simulator."""
    if dataset is not None:
        if dataset not in DATASETS:
            raise DemoDataError(f"unknown --dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
        if dataset == "simulate" and path is not None:
            raise DemoDataError(
                "--path names a file to stream; it cannot be combined with --dataset simulate"
            )
        return dataset
    if path is not None:
        return "movielens"
    try:
        resolve_path("movielens", None, data_dir)
    except StreamrecError:
        return "simulate"
    return "movielens"


def event_cap(requested: int | None, exit_after: bool, dataset: str) -> int | None:
    """How many events to stream: --events, else the simulator's default size, else everything (at most
    ``EXIT_EVENT_CAP`` with --exit)."""
    if requested is not None:
        return requested
    if dataset == "simulate":
        return SIMULATE_DEFAULT_EVENTS
    return EXIT_EVENT_CAP if exit_after else None


def movielens_catalog(ratings_path: Path, item_ids: set[str]) -> list[ItemUpdate]:
    """Titles and first genre from ``movies.csv`` next to ``ratings.csv``; none if it is absent."""
    movies = ratings_path.with_name("movies.csv")
    if not movies.is_file():
        return []
    items: list[ItemUpdate] = []
    with open(movies, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            item = (row.get("movieId") or "").strip()
            if item not in item_ids:
                continue
            genre = (row.get("genres") or "").split("|")[0].strip()
            data: dict[str, object] = {"item_id": item, "title": (row.get("title") or "").strip()[:1024]}
            if genre and genre != "(no genres listed)":
                data["category"] = genre
            update = validate_item_update(data)
            if not isinstance(update, ParseError):
                items.append(update)
    return items


def simulated(n_events: int, *, seed: int = 42, end: datetime | None = None) -> DemoData:
    """A storefront sized to the event count (about 40 events per shopper, 8 per item)."""
    from tooling.producers.simulator import Storefront, StorefrontConfig

    config = StorefrontConfig(
        users=max(50, n_events // 40),
        items=max(200, n_events // 8),
        events=n_events,
        seed=seed,
        categories=12,
        end=end or datetime.now(UTC),
    )
    shop = Storefront(config)
    return DemoData(
        name="simulate",
        description=(
            f"simulated storefront (seed {seed}): {config.users:,} shoppers, {config.items:,} items, "
            f"{n_events:,} events"
        ),
        events=list(shop.events()),
        items=shop.catalog(),
    )


def from_source(name: str, data: SourceData) -> DemoData:
    items = data.items
    if name == "movielens" and not items:
        items = movielens_catalog(data.path, {e.item_id for e in data.events})
    return DemoData(
        name=name,
        description=f"{name} from {data.path} ({len(data.events):,} events)",
        events=data.events,
        items=items,
        rejected=len(data.errors),
    )


# A remembered period older than this is replaced: its events would fall out of the training window.
SIMULATED_PERIOD_MAX_AGE = timedelta(days=3)


def simulated_period_end(state_dir: Path, now: datetime | None = None) -> datetime:
    """The end of the simulated period, kept in ``state_dir`` beside the dev stack's data.

    Event ids include the period's end, so a re-run with the same end stores nothing new (the same
    events), while a new end would be new events. The dev stack's MongoDB lives in the same folder,
    so the remembered end lasts exactly as long as the events stored with it."""
    now = now or datetime.now(UTC)
    marker = state_dir / "demo-simulated-end"
    try:
        end = datetime.fromisoformat(marker.read_text().strip())
        if timedelta(0) <= now - end <= SIMULATED_PERIOD_MAX_AGE:
            return end
    except (OSError, ValueError):
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(now.isoformat())
    return now


def load_demo_data(
    dataset: str,
    path: Path | None,
    cap: int | None,
    data_dir: Path | None = None,
    *,
    simulated_end: datetime | None = None,
) -> DemoData:
    if dataset == "simulate":
        return simulated(cap if cap is not None else SIMULATE_DEFAULT_EVENTS, end=simulated_end)
    data = from_source(dataset, load_source(dataset, path, data_dir, limit=cap))
    if not data.events:
        raise DemoDataError(
            f"{data.description} holds no valid events; pass another --path or --dataset simulate"
        )
    return data
