"""`streamrec retrain` and `streamrec model list|show|promote|rollback`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.app import app, model_app
from cli.context import configure_logging, load_settings, mongo_guard
from cli.retrain_tune import Tuning, open_tuned_configs
from core.errors import ConfigError, NotInstalled, StreamrecError

if TYPE_CHECKING:
    from core.settings import Settings
    from retrain.pipeline import RetrainConfig, RetrainResult
    from storage.model_registry import ModelRecord

log = logging.getLogger(__name__)
console = Console()
# How often `--every ... --after-events N` counts the stored events.
EVENT_COUNT_POLL_S = 10.0


def _registry(settings: Settings) -> Any:
    from storage.model_registry_mongo import open_model_registry

    return open_model_registry(settings)


@contextmanager
def _erased_users(settings: Settings) -> Iterator[set[str]]:
    """The erased user ids from the event store (on a short-lived connection)."""
    from storage.event_store import MongoEventStore

    store = MongoEventStore.from_settings(settings.mongo)
    try:
        yield store.erased_users()
    finally:
        store.close()


# What `streamrec retrain` says where torch is absent, rather than a traceback from inside the trainer.
NO_TORCH = (
    "`streamrec retrain` trains models with PyTorch, which this installation lacks (the lean serving"
    " image, Dockerfile target `serving`, is built without it): run retrain from the full image (the"
    " Dockerfile's default target) or install the extra with `pip install 'streamrec[train]'`"
)


def _trainer_from_settings() -> Any:
    """``retrain.model_adapter.trainer_from_settings``, imported where torch is checked."""
    try:
        from retrain.model_adapter import trainer_from_settings
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise NotInstalled(NO_TORCH) from None
    return trainer_from_settings


@app.command("retrain")
def retrain(
    once: bool = typer.Option(False, "--once", help="Train, gate and publish once, then exit."),
    every: str | None = typer.Option(None, "--every", help="Run on this interval: 30s, 15m, 2h, 1d."),
    after_events: int | None = typer.Option(
        None, "--after-events", min=1, help="With --every: run early once this many new events arrived."
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="Write each successful run's report (outcome, wall time and peak RSS per stage) as JSON here.",
    ),
    tune: bool = typer.Option(
        False,
        "--tune",
        help="Tune the model settings on the recent events (seeded Optuna search) and record them; "
        "alone it tunes and exits, with --once/--every it tunes, then retrains with the result. "
        "STREAMREC_RETRAIN__TUNE_EVERY tunes on a schedule inside --every.",
    ),
    tune_budget_s: float | None = typer.Option(
        None,
        "--tune-budget-s",
        min=1.0,
        help="No new trial after this many seconds (default: STREAMREC_RETRAIN__TUNE_BUDGET_S, 900).",
    ),
    tune_trials: int | None = typer.Option(
        None,
        "--tune-trials",
        min=1,
        help="At most this many trials (default: STREAMREC_RETRAIN__TUNE_TRIALS, 40).",
    ),
) -> None:
    """Train a candidate on the recent events, gate it against the champion, publish it.

    Retraining uses the newest tuned configuration (`streamrec model tuned`) for every model setting
    the environment or .env does not set."""
    from retrain.duration import parse_duration

    # First: no setting can make up for a missing torch, and nothing (metrics port) is started yet.
    trainer_from_settings = _trainer_from_settings()

    settings = load_settings()
    configure_logging(settings.log_level)
    if once and (every or after_events):
        raise ConfigError("--once runs a single time; drop --every/--after-events or drop --once")
    if not tune and (tune_budget_s is not None or tune_trials is not None):
        raise ConfigError("--tune-budget-s and --tune-trials only apply with --tune")
    tune_only = tune and not once and every is None and after_events is None
    if tune_only:
        _tune_only(settings, tune_budget_s, tune_trials)
        return
    every = every or (None if once else settings.retrain.every)
    if once == (every is not None):
        raise ConfigError("pass --once or --every DURATION (e.g. 15m), or set STREAMREC_RETRAIN__EVERY")
    interval_s = parse_duration(every) if every is not None else 0.0
    after_events = None if once else (after_events or settings.retrain.after_events)

    from core.errors import ModelError
    from model.artifact_erasure import scrub_files
    from retrain.loop import run_every
    from retrain.metrics import RetrainMetrics
    from retrain.pipeline import RetrainConfig, RetrainFailed, RetrainResult
    from retrain.segments import SegmentConfig
    from storage.event_store import MongoEventStore
    from storage.model_erasure import scrub_registry
    from storage.retrain_requests import MongoRetrainRequests
    from storage.shoppers_mongo import MongoShopperStore

    # The composition root: everything a run uses is built here from Settings and handed in.
    metrics = RetrainMetrics()
    metrics.serve(settings.retrain.metrics_port)
    config = RetrainConfig.from_settings(settings.retrain)
    store = MongoEventStore.from_settings(settings.mongo)
    registry = _registry(settings)
    requests = MongoRetrainRequests.from_settings(settings.mongo)
    shoppers = MongoShopperStore.from_settings(settings.mongo)
    segments = SegmentConfig(
        shoppers,
        settings.model.segment_attribute,
        settings.model.segment_min_users,
        settings.retrain.gate_min_users,
    )
    tuned_store = open_tuned_configs(settings)
    tuning = Tuning(
        settings, store, tuned_store, config, budget_s=tune_budget_s, trials=tune_trials, first=tune
    )

    def one_run() -> RetrainResult:
        started = time.monotonic()
        try:
            with mongo_guard(settings):
                # Per run: a (scheduled) tuning may have recorded a new configuration since the last.
                trainer = trainer_from_settings(tuning.model_settings(), catalog=store.iter_items)
                result = _run_with_progress(store, registry, trainer, config, segments)
        except (StreamrecError, ModelError) as exc:
            failed = RetrainResult(
                outcome="failed", n_events=0, duration_s=time.monotonic() - started, error=str(exc)
            )
            metrics.observe(failed)
            log.error("retrain_failed error=%s", exc)
            if isinstance(exc, StreamrecError):
                raise
            raise RetrainFailed(f"{type(exc).__name__}: {exc}") from exc
        metrics.observe(result)
        _print_result(result)
        if report is not None:
            write_run_report(report, result)
        return result

    try:
        if once:
            one_run()
            return
        console.print(
            f"retraining every {every}" + (f" or after {after_events} new events" if after_events else "")
        )
        run_every(
            interval_s,
            one_run,
            count_events=store.count_events,
            after_events=after_events,
            requests=requests,
            # Erasures done through the API reach every stored model version within one poll.
            between_runs=lambda: scrub_registry(registry, store.erased_users(), scrub_files),
            poll_s=min(EVENT_COUNT_POLL_S, interval_s),
        )
    finally:
        shoppers.close()
        tuned_store.close()
        requests.close()
        registry.close()
        store.close()


def _tune_only(settings: Settings, budget_s: float | None, trials: int | None) -> None:
    """`streamrec retrain --tune` alone: tune, record, exit."""
    from retrain.pipeline import RetrainConfig
    from storage.event_store import MongoEventStore

    store = MongoEventStore.from_settings(settings.mongo)
    tuned_store = open_tuned_configs(settings)
    try:
        tuning = Tuning(
            settings,
            store,
            tuned_store,
            RetrainConfig.from_settings(settings.retrain),
            budget_s=budget_s,
            trials=trials,
            first=True,
        )
        with mongo_guard(settings):
            tuning.run_now()
    finally:
        tuned_store.close()
        store.close()


def _run_with_progress(
    store: Any, registry: Any, trainer: Any, config: RetrainConfig, segments: Any = None
) -> RetrainResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from retrain.pipeline import run_retrain

    with Progress(
        TextColumn("[bold]retrain[/] {task.fields[stage]:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("retrain", total=None, loss="-", stage="starting")

        def on_epoch(epoch: int, total: int, loss: float) -> None:
            shown = "-" if loss != loss else f"{loss:.4f}"  # NaN: the model reported no loss
            progress.update(task, completed=epoch, total=total, loss=shown)

        def on_stage(name: str) -> None:
            progress.update(task, stage=name)

        return run_retrain(
            store, registry, trainer, config, on_epoch=on_epoch, on_stage=on_stage, segments=segments
        )


def _print_result(result: RetrainResult) -> None:
    colour = "green" if result.outcome == "promoted" else "yellow"
    reason = result.decision.reason if result.decision else ""
    console.print(
        f"[{colour}]model v{result.version} {result.outcome}[/] "
        f"events={result.n_events} duration={result.duration_s:.1f}s — {reason}",
        highlight=False,
    )
    run = result.run_report
    if run.get("stages"):
        stages = "  ".join(f"{name} {f['wall_s']:.1f}s" for name, f in run["stages"].items())
        console.print(f"stages: {stages}  peak RSS {run['peak_rss_mib']:.0f} MiB", highlight=False)


def write_run_report(path: Path, result: RetrainResult) -> None:
    """The run's own figures as JSON (what `streamrec bench retrain` reads)."""
    import orjson

    decision = result.decision
    body = {
        "outcome": result.outcome,
        "version": result.version,
        "n_events": result.n_events,
        "duration_s": round(result.duration_s, 3),
        "metrics": result.metrics,
        "reason": decision.reason if decision else None,
        **result.run_report,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def _ndcg(record: ModelRecord) -> str:
    value = record.gate.get("candidate_ndcg", record.metrics.get("holdout_ndcg@10"))
    return "-" if value is None else f"{float(value):.4f}"


def _evidence(record: ModelRecord) -> str:
    """Users/events the gate judged on, e.g. "156u/300e"; "2u/10e unjudged" below the minimums
    (the minimums themselves are in `streamrec model show`)."""
    gate = record.gate
    if "eval_users" not in gate:
        return "-"
    shown = f"{gate['eval_users']}u/{gate.get('eval_events', '?')}e"
    return shown + (" unjudged" if gate.get("judged") is False else "")


@model_app.command("list")
def model_list() -> None:
    """Every published version with its status and held-out NDCG@10."""
    settings = load_settings()
    registry = _registry(settings)
    try:
        with mongo_guard(settings):
            records = registry.list()
    finally:
        registry.close()
    if not records:
        console.print("no model published yet; run `streamrec retrain --once`")
        return
    table = Table(title="models")
    for column in ("version", "status", "ndcg@10", "trained_at", "events"):
        # The status column fits "not_judged" whole even on an 80-column terminal.
        table.add_column(column, no_wrap=True, min_width=10 if column == "status" else len(column))
    table.add_column("evidence", min_width=9)
    table.add_column("reason", overflow="fold")
    styles = {
        "champion": "bold green",
        "rejected": "red",
        "retired": "dim",
        "candidate": "yellow",
        "not_judged": "yellow",
    }
    for rec in records:
        table.add_row(
            str(rec.version),
            f"[{styles.get(rec.status, '')}]{rec.status}[/]",
            _ndcg(rec),
            # Short enough to leave the reason some room on an 80-column terminal; `model show` has it all.
            rec.trained_at.strftime("%m-%d %H:%M") if rec.trained_at else "-",
            "-" if rec.n_events is None else str(rec.n_events),
            # A champion promoted without enough evidence says so here.
            _evidence(rec),
            rec.reason or "",
        )
    console.print(table)


@model_app.command("show")
def model_show(version: int = typer.Argument(..., help="Model version.")) -> None:
    """One version's full record as JSON."""
    import orjson

    settings = load_settings()
    registry = _registry(settings)
    try:
        with mongo_guard(settings):
            record = registry.get(version)
    finally:
        registry.close()
    typer.echo(
        orjson.dumps(record.to_json_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    )


@model_app.command("promote")
def model_promote(
    version: int = typer.Argument(..., help="Model version to make champion."),
    reason: str = typer.Option("promoted by hand", "--reason", help="Why (kept in the record)."),
) -> None:
    """Make a version the champion (the current champion is retired); serving picks it up."""
    from model.artifact_erasure import scrub_files
    from storage.model_erasure import promote_erased

    settings = load_settings()
    registry = _registry(settings)
    try:
        with mongo_guard(settings), _erased_users(settings) as erased:
            # Refuse to promote an artifact that serving could not download intact.
            registry.load_files(version)
            # An old version may predate erasures: it is scrubbed before it can serve again.
            record = promote_erased(registry, version, reason, erased, scrub_files)
    finally:
        registry.close()
    console.print(f"[green]model v{record.version} is now the champion[/]")


@model_app.command("rollback")
def model_rollback(
    reason: str = typer.Option("rolled back by hand", "--reason", help="Why (kept in the records)."),
) -> None:
    """Make the previous champion the champion again (the current one is retired)."""
    from model.artifact_erasure import scrub_files
    from storage.model_erasure import rollback_erased

    settings = load_settings()
    registry = _registry(settings)
    try:
        with mongo_guard(settings), _erased_users(settings) as erased:
            record = rollback_erased(registry, reason, erased, scrub_files)
    finally:
        registry.close()
    console.print(f"[green]rolled back: model v{record.version} is the champion again[/]")
