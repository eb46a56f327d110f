"""The data half of `streamrec demo`: stream the events, wait until they are stored, train and compare.

Split from ``tooling.demo.command`` (the command and its HTTP half); it reports through the same rich console.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from core.errors import StreamrecError
from tooling.demo.data import DemoData
from tooling.demo.report import last_event_per_user

if TYPE_CHECKING:
    from core.event_table import EventTable
    from core.settings import Settings
    from tooling.devstack.processes import ManagedProcess


class DemoError(StreamrecError):
    """A demo step failed; the message says which and what to do."""


def stream(settings: Settings, data: DemoData, console: Console) -> None:
    from tooling.producers.replay import publish
    from tooling.producers.replay_sources import SourceData

    source = SourceData(path=Path(data.name), events=data.events, items=data.items)
    stats = publish(settings, source, rate=None, console=console)
    console.print(
        f"[green]streamed[/] {stats.acked:,} events to Kafka topic {settings.kafka.topics.events} "
        f"in {stats.elapsed_s:.1f}s ({stats.acked / max(stats.elapsed_s, 1e-9):,.0f} ev/s)"
    )


def wait_stored(settings: Settings, data: DemoData, consumer: ManagedProcess, console: Console) -> int:
    """Until each user's last event is in MongoDB (hence all of theirs); returns the stored count."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from storage.event_store import MongoEventStore

    pending = last_event_per_user(data.events)
    total_users = len(pending)
    timeout_s = 60.0 + len(data.events) / 500.0
    store = MongoEventStore.from_settings(settings.mongo)
    start = time.monotonic()
    try:
        with Progress(
            TextColumn("[bold]stored"), BarColumn(), MofNCompleteColumn(), TextColumn("users complete"),
            TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("stored", total=total_users)
            while pending:
                if not consumer.alive():
                    raise DemoError(
                        f"the consumer exited with code {consumer.popen.returncode}; see {consumer.log_path}"
                    )
                if time.monotonic() - start > timeout_s:
                    raise DemoError(
                        f"the consumer stored only part of the events within {timeout_s:.0f}s; "
                        f"see its log {consumer.log_path}"
                    )
                stored: set[str] = set()
                for at in range(0, len(pending), 500):
                    chunk = pending[at : at + 500]
                    stored |= store.stored_event_ids(chunk)
                pending = [i for i in pending if i not in stored]
                progress.update(task, completed=total_users - len(pending))
                if pending:
                    time.sleep(0.5)
        count = store.count_events()
    finally:
        store.close()
    console.print(f"[green]stored[/] MongoDB holds {count:,} events (database {settings.mongo.database})")
    return count


def train(settings: Settings, console: Console) -> tuple[int, EventTable]:
    """One retraining run in-process. Returns the champion's version and the stored events it read."""
    from datetime import UTC, datetime, timedelta

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from retrain.event_source import read_window
    from retrain.gate import NotEnoughData, holdout_split
    from retrain.model_adapter import trainer_from_settings
    from retrain.pipeline import RetrainConfig, run_retrain
    from storage.event_store import MongoEventStore
    from storage.model_registry_mongo import open_model_registry

    cfg = RetrainConfig.from_settings(settings.retrain)
    now = datetime.now(UTC)
    store = MongoEventStore.from_settings(settings.mongo)
    registry = open_model_registry(settings)
    try:
        since = None if cfg.window_days is None else now - timedelta(days=cfg.window_days)
        table = read_window(store, since, now, store.erased_users())
        try:
            holdout_split(table, cfg.holdout_fraction)  # the check retraining makes, with the demo's advice
        except NotEnoughData as exc:
            raise DemoError(
                f"cannot train on {len(table)} stored events: {exc}; stream more (--events N)"
            ) from None
        with Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epochs  loss {task.fields[loss]}"), TimeElapsedColumn(), console=console,
        ) as progress:  # fmt: skip
            task = progress.add_task("train", total=None, loss="-")

            def on_epoch(epoch: int, total: int, loss: float) -> None:
                progress.update(
                    task, completed=epoch, total=total, loss=f"{loss:.4f}" if math.isfinite(loss) else "n/a"
                )

            result = run_retrain(
                store,
                registry,
                # The catalog the demo streamed: its model carries the cold-start content map.
                trainer_from_settings(settings.model, catalog=store.iter_items),
                cfg,
                now=now,
                on_epoch=on_epoch,
            )
        champion = registry.champion()
    finally:
        registry.close()
        store.close()
    colour = "green" if result.outcome == "promoted" else "yellow"
    reason = result.decision.reason if result.decision else ""
    # The gate's verdict (its own time split, against the previous champion); the comparison with the
    # baselines follows with `bench quality`'s protocol.
    console.print(
        f"[{colour}]model v{result.version} {result.outcome}[/] by the gate: {reason}", highlight=False
    )
    if champion is None:
        raise DemoError("no champion model after retraining; see `streamrec model list`")
    return champion.version, table


def judge(settings: Settings, table: EventTable, console: Console, plot_path: Path, label: str) -> None:
    """streamrec against popularity and the best cheap baseline (``tooling.demo.quality``), table and plot."""
    from model.errors import EmptyDataError
    from retrain.model_adapter import train_config
    from tooling.demo.quality import compare, print_comparison, write_plot

    start = time.monotonic()
    with console.status("fitting streamrec, popularity and the baselines on the training part"):
        try:
            comparison = compare(table, train_config(settings.model))
        except EmptyDataError as exc:
            console.print(
                f"[yellow]note:[/] no quality table: {exc}; stream more events (--events)", highlight=False
            )
            return
    print_comparison(console, comparison, data_users=len(set(table.user_id.tolist())))
    try:
        write_plot(comparison, f"streamrec demo, {label}, {comparison.users:,} users", plot_path)
    except ImportError:
        console.print(
            "[yellow]note:[/] no quality plot: matplotlib is not installed (pip install '.[bench]')"
        )
    else:
        console.print(
            f"quality plot (NDCG@K and Recall@K, K = 1..50): {plot_path}", highlight=False, soft_wrap=True
        )
    console.print(f"[dim]compared in {time.monotonic() - start:.1f}s[/]")
