"""`streamrec replay`: stream a real data set into Kafka in timestamp order."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.console import Console

from cli.app import app
from core.errors import StreamrecError
from core.settings import Settings
from tooling.producers.produce import (
    DeliveryStats,
    event_record,
    item_record,
    make_cli_producer,
    produce_all,
    progress_bar,
)
from tooling.producers.replay_sources import SOURCES, SourceData, iter_errors, load_source


def write_rejects(path: Path, rows: list[tuple[int, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "reason"])
        writer.writerows(rows)


@app.command("replay")
def replay_command(
    source: str = typer.Argument(..., help=f"One of: {', '.join(SOURCES)}."),
    path: Path | None = typer.Option(None, "--path", help="The file to replay (csv needs it)."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Where the data sets live (default ../shared/data)."
    ),
    rate: float | None = typer.Option(
        None, "--rate", help="Events per second (default: as fast as possible)."
    ),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Replay only the first N events in time order."
    ),
    rejects: Path | None = typer.Option(
        None, "--rejects", help="Write every rejected row (line, reason) here."
    ),
) -> None:
    """Replay movielens (ratings.csv / u.data), taobao (UserBehavior) or a generic events csv.

    Events are keyed by user id and carry deterministic ids, so replaying a file twice stores nothing new.
    """
    from cli.context import configure_logging, load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    console = Console()
    if source not in SOURCES:
        raise StreamrecError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    with console.status(f"reading {source} data"):
        data = load_source(source, path, data_dir, limit=limit)
    console.print(
        f"read {data.rows:,} rows from {data.path}: {len(data.events):,} events to replay"
        + (f", {len(data.items):,} catalog updates" if data.items else "")
        + (f", [yellow]{len(data.errors):,} rejected[/]" if data.errors else "")
    )
    for line in iter_errors(data):
        console.print(f"  [yellow]rejected[/] {line}", highlight=False)
    if rejects is not None and data.errors:
        write_rejects(rejects, [(e.row, e.reason) for e in data.errors])
        console.print(f"  every rejected row is listed in {rejects}")
    if not data.events:
        raise StreamrecError(f"{data.path} holds no valid events to replay")

    stats = publish(settings, data, rate=rate, console=console)
    console.print(
        f"[green]replayed[/] {stats.acked:,} events to {settings.kafka.topics.events} "
        f"in {stats.elapsed_s:.1f}s "
        f"({stats.acked / max(stats.elapsed_s, 1e-9):,.0f} ev/s)"
        + (f"; {len(data.errors):,} rows rejected" if data.errors else "")
    )


def publish(settings: Settings, data: SourceData, *, rate: float | None, console: Console) -> DeliveryStats:
    """The catalog updates first (so items are known before their events), then the events in time order."""
    topics = settings.kafka.topics
    producer = make_cli_producer(settings)
    with progress_bar(console) as progress:
        if data.items:
            produce_all(
                producer, topics.items, (item_record(u) for u in data.items),
                total=len(data.items), description="catalog", progress=progress,
            )  # fmt: skip
        return produce_all(
            producer, topics.events, (event_record(e) for e in data.events),
            total=len(data.events), description="events", rate=rate, progress=progress,
        )  # fmt: skip
