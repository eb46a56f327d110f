"""The data half of `streamrec demo`: stream the events, wait until they are stored, train and compare.

Split from ``cli.demo`` (the command and its HTTP half); it reports through the same rich console.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from cli.demo_data import DemoData
from cli.demo_report import METRICS, last_event_per_user, lift, popularity_recs, quality_rows
from core.errors import StreamrecError

if TYPE_CHECKING:
    from cli.processes import ManagedProcess
    from core.settings import Settings


class DemoError(StreamrecError):
    """A demo step failed; the message says which and what to do."""


def stream(settings: Settings, data: DemoData, console: Console) -> None:
    from cli.replay import publish
    from cli.replay_sources import SourceData

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


def train(settings: Settings, console: Console) -> tuple[int, dict[str, Any]]:
    """One retraining run in-process; prints the quality table. Returns (champion version, metrics)."""
    from datetime import UTC, datetime, timedelta

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from retrain.event_source import read_window
    from retrain.gate import GATE_K, NotEnoughData, holdout_split, ranking_metrics
    from retrain.model_adapter import trainer_from_settings
    from retrain.pipeline import RetrainConfig, run_retrain
    from storage.event_store import MongoEventStore
    from storage.model_registry_mongo import open_model_registry

    cfg = RetrainConfig.from_settings(settings.retrain)
    now = datetime.now(UTC)
    store = MongoEventStore.from_settings(settings.mongo)
    registry = open_model_registry(settings)
    try:
        # The baseline is scored on exactly the split the gate uses (same window, champion, clock).
        champ = registry.champion()
        since = None if cfg.window_days is None else now - timedelta(days=cfg.window_days)
        table = read_window(store, since, now, store.erased_users())
        champ_until = champ.data_window.get("train_until_ms") if champ is not None else None
        try:
            split = holdout_split(table, cfg.holdout_fraction, champ_until, cfg.gate_max_users)
        except NotEnoughData as exc:
            raise DemoError(
                f"cannot train on {len(table)} stored events: {exc}; stream more (--events N)"
            ) from None
        baseline = ranking_metrics(
            popularity_recs(split.train, split.histories, split.users, GATE_K), split.targets
        )
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
                store, registry, trainer_from_settings(settings.model), cfg, now=now, on_epoch=on_epoch
            )
        champion = registry.champion()
    finally:
        registry.close()
        store.close()
    colour = "green" if result.outcome == "promoted" else "yellow"
    reason = result.decision.reason if result.decision else ""
    console.print(f"[{colour}]model v{result.version} {result.outcome}[/]: {reason}", highlight=False)
    if champion is None:
        raise DemoError("no champion model after retraining; see `streamrec model list`")
    print_quality(console, f"streamrec v{result.version}", result.metrics, baseline, len(split.users), cfg)
    return champion.version, result.metrics


def print_quality(
    console: Console, name: str, metrics: dict[str, Any], baseline: dict[str, float], users: int, cfg: Any
) -> None:
    console.print(
        f"held-out quality: {users:,} users, judged on the last {cfg.holdout_fraction:.0%} of events by time"
    )
    table = Table()
    table.add_column("model")
    for metric in METRICS:
        table.add_column(metric.upper(), justify="right")
    for row in quality_rows(name, metrics, baseline):
        table.add_row(row.name, *(f"{row.values[m]:.4f}" for m in METRICS))
    console.print(table)
    ndcg = float(metrics.get("holdout_ndcg@10", 0.0))
    console.print(f"NDCG@10: streamrec {lift(ndcg, baseline['ndcg@10'])} popularity", highlight=False)
