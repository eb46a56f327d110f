"""What `streamrec report` and `streamrec experiment` share: the stores opened from Settings, the
``--since`` and ``--json`` options, rate formatting and one-line errors.

The logic itself is ``storage.experiment_admin`` and ``storage.online_reads`` (the admin endpoints
call the same); this module only builds their MongoDB adapters and prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console

from cli.context import mongo_guard
from core.errors import ConfigError

if TYPE_CHECKING:
    from core.settings import Settings
    from storage.experiment_admin import ExperimentAdmin

SinceOption = typer.Option(
    "24h", "--since", help="How far back: a duration (30m, 24h, 7d) or an ISO-8601 time."
)
JsonOption = typer.Option(
    None, "--json", help="Also write the report as JSON to this file ('-' prints it instead of the table)."
)


def usage_error(message: str) -> NoReturn:
    """One line on stderr and exit status 2: the input is wrong and nothing was changed."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def refused(message: str) -> NoReturn:
    """One line on stderr and exit status 1: the request was understood but cannot be done now."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]refused:[/] {message}", highlight=False)
    raise typer.Exit(1)


def since_time(text: str, settings: Settings, now: datetime) -> datetime:
    """``--since`` as a time, no further back than the impressions are kept."""
    from core.duration import parse_since
    from storage.online_reads import clamp_since

    try:
        since = parse_since(text, now)
    except ConfigError as exc:
        usage_error(str(exc))
    assert since is not None
    return clamp_since(since, settings.serving.impressions.retention_days * 86400.0, now)


def emit_json(path: Path | None, data: dict[str, Any]) -> bool:
    """Write ``data`` to ``path`` ('-': stdout). True when it went to stdout (no table then)."""
    if path is None:
        return False
    import orjson

    text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    if str(path) == "-":
        typer.echo(text.decode(), nl=False)
        return True
    try:
        path.write_bytes(text)
    except OSError as exc:
        usage_error(f"cannot write --json {path}: {exc.strerror or exc}")
    return False


def rate(value: float | None, interval: list[float] | None) -> str:
    """A rate as a percentage with its 95% interval: "12.3% [11.0, 13.7]"."""
    if value is None:
        return "-"
    shown = f"{100 * value:.2f}%"
    if interval is not None:
        shown += f" [{100 * interval[0]:.2f}, {100 * interval[1]:.2f}]"
    return shown


def now_utc() -> datetime:
    return datetime.now(UTC)


@contextmanager
def experiment_admin(settings: Settings) -> Iterator[ExperimentAdmin]:
    """``ExperimentAdmin`` over the MongoDB adapters (each on its own client, closed afterwards)."""
    from model.artifact_erasure import scrub_files
    from storage.event_store import MongoEventStore
    from storage.experiment_admin import ExperimentAdmin
    from storage.experiments_mongo import MongoExperimentStore
    from storage.impressions_mongo import MongoImpressionStore
    from storage.model_registry_mongo import open_model_registry

    closers: list[Any] = []
    try:
        with mongo_guard(settings):
            events = MongoEventStore.from_settings(settings.mongo)
            closers.append(events.close)
            experiments = MongoExperimentStore.from_settings(settings.mongo)
            closers.append(experiments.close)
            impressions = MongoImpressionStore.from_settings(settings.mongo)
            closers.append(impressions.close)
            registry = open_model_registry(settings)
            closers.append(registry.close)
            yield ExperimentAdmin(
                experiments=experiments,
                registry=registry,
                impressions=impressions,
                events=events,
                erased_users=events.erased_users,
                scrub=scrub_files,
                retention_s=settings.serving.impressions.retention_days * 86400.0,
            )
    finally:
        for close in reversed(closers):
            close()
