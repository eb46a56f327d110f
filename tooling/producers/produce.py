"""Producing from the CLI (rate limit, progress bar, delivery accounting) and `streamrec simulate`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import typer
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cli.app import app
from core.errors import DependencyUnavailable, StreamrecError
from core.events import InteractionEvent, ItemUpdate
from core.settings import Settings
from storage.kafka import make_producer
from storage.kafka_delivery import OutMessage
from storage.kafka_publish import DeliveryCounts, publish

log = logging.getLogger(__name__)

Record = tuple[bytes, bytes]  # (key, value)


class Pacer:
    """Holds a producer to ``rate`` records per second on average (None = as fast as possible)."""

    def __init__(self, rate: float | None) -> None:
        if rate is not None and rate <= 0:
            raise StreamrecError("--rate must be a positive number of events per second")
        self.rate = rate
        self._start = time.monotonic()
        self._sent = 0

    def wait(self) -> None:
        if self.rate is None:
            return
        self._sent += 1
        due = self._start + self._sent / self.rate
        delay = due - time.monotonic()
        if delay > 0.0005:
            time.sleep(delay)


@dataclass
class DeliveryStats(DeliveryCounts):
    """The publisher's delivery counts plus the wall-clock time the whole send took."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started


def event_record(event: InteractionEvent) -> Record:
    return event.user_id.encode("utf-8"), event.to_json()


def item_record(update: ItemUpdate) -> Record:
    return update.item_id.encode("utf-8"), update.to_json()


def send(producer: Producer, topic: str, key: bytes, value: bytes, stats: DeliveryStats) -> None:
    """Queue one record, waiting for room when the local queue is full instead of failing."""
    publish(producer, topic, [(key, value, None)], counts=stats)


def finish(producer: Producer, stats: DeliveryStats, what: str, timeout_s: float = 60.0) -> DeliveryStats:
    """Wait for every acknowledgement; raise one actionable line if any record was not delivered."""
    pending = producer.flush(timeout_s)
    stats.finished = time.monotonic()
    if pending:
        raise DependencyUnavailable(
            f"Kafka did not acknowledge {pending} of {stats.sent} {what} within {timeout_s:.0f}s; "
            "is the broker up?"
        )
    if stats.failed:
        raise DependencyUnavailable(
            f"{stats.failed} of {stats.sent} {what} were not delivered (first error: {stats.first_error})"
        )
    return stats


def progress_bar(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def produce_all(
    producer: Producer,
    topic: str,
    records: Iterable[Record],
    *,
    total: int | None,
    description: str,
    rate: float | None = None,
    progress: Progress | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> DeliveryStats:
    """Send every record (paced, with a progress task), then wait for all acknowledgements."""
    stats = DeliveryStats()
    pacer = Pacer(rate)
    task = progress.add_task(description, total=total, rate="") if progress else None
    last_update = 0.0

    def paced() -> Iterator[OutMessage]:
        for key, value in records:
            pacer.wait()
            yield key, value, None

    def sent(count: int) -> None:
        nonlocal last_update
        if on_sent is not None:
            on_sent(count)
        if progress is not None and task is not None:
            now = time.monotonic()
            if now - last_update > 0.1:
                progress.update(task, completed=count, rate=f"{count / stats.elapsed_s:,.0f} ev/s")
                last_update = now

    publish(producer, topic, paced(), counts=stats, on_sent=sent)
    finish(producer, stats, description)
    if progress is not None and task is not None:
        progress.update(
            task, completed=stats.sent, total=stats.sent, rate=f"{stats.sent / stats.elapsed_s:,.0f} ev/s"
        )
    return stats


def make_cli_producer(settings: Settings) -> Producer:
    # A bigger local batch keeps a bulk replay from being bound by per-message round trips.
    return make_producer(settings.kafka, **{"linger.ms": 20, "batch.num.messages": 10_000})


@app.command("simulate")
def simulate_command(
    users: int = typer.Option(1000, "--users", min=1, help="Number of shoppers."),
    items: int = typer.Option(5000, "--items", min=1, help="Number of catalog items."),
    events: int = typer.Option(100_000, "--events", min=0, help="Number of interaction events."),
    seed: int = typer.Option(42, "--seed", help="Random seed: the same seed gives the same shop and events."),
    categories: int = typer.Option(20, "--categories", min=1, help="Number of item categories."),
    rate: float | None = typer.Option(
        None, "--rate", help="Events per second (default: as fast as possible)."
    ),
    days: float = typer.Option(7.0, "--days", min=0.001, help="Simulated period, ending now."),
) -> None:
    """Publish a synthetic storefront: the item catalog first, then shopper events in time order."""
    from cli.context import configure_logging, load_settings
    from tooling.producers.simulator import Storefront, StorefrontConfig

    settings = load_settings()
    configure_logging(settings.log_level)
    console = Console()
    try:
        config = StorefrontConfig(
            users=users, items=items, events=events, seed=seed, categories=categories, days=days,
            end=datetime.now(UTC),
        )  # fmt: skip
    except ValueError as exc:
        raise StreamrecError(f"invalid simulation: {exc}") from None
    shop = Storefront(config)
    topics = settings.kafka.topics
    producer = make_cli_producer(settings)
    with progress_bar(console) as progress:
        catalog = produce_all(
            producer, topics.items, (item_record(u) for u in shop.catalog()),
            total=items, description="catalog", progress=progress,
        )  # fmt: skip
        stats = produce_all(
            producer, topics.events, (event_record(e) for e in shop.events()),
            total=events, description="events", rate=rate, progress=progress,
        )  # fmt: skip
    console.print(
        f"[green]published[/] {catalog.acked:,} items to {topics.items} and {stats.acked:,} events to "
        f"{topics.events} in {stats.elapsed_s:.1f}s ({stats.acked / max(stats.elapsed_s, 1e-9):,.0f} ev/s), "
        f"seed {seed}"
    )
