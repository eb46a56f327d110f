"""`streamrec dead-letter list|replay`: inspect the dead-letter topic and re-send records after a fix.

A typical fix: the consumer's rules were wrong or too strict (or a dependency was missing), a new
version is deployed, and the records it refused are sent again to the topic they came from:

    streamrec dead-letter list --code future_timestamp --since 2h
    streamrec dead-letter replay --code future_timestamp --since 2h --dry-run
    streamrec dead-letter replay --code future_timestamp --since 2h

Replaying is safe to repeat: an event id MongoDB already holds is a duplicate without effects, and an
item update is a full-state upsert. Records that still fail are dead-lettered again (with a new offset).
"""

from __future__ import annotations

import base64
import re
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from cli.app import dead_letter_app
from cli.context import load_settings
from core.duration import parse_since  # re-exported: tests and callers use cli.dead_letter.parse_since
from core.errors import ConfigError

if TYPE_CHECKING:
    from storage.dead_letters import DeadLetterRecord

_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Control characters (and the escape character) are shown escaped: a record must not rewrite the terminal.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")

CodeOption = typer.Option(None, "--code", help="Only records with this reason code (e.g. bad_json).")
SinceOption = typer.Option(
    None, "--since", help="Only records that failed since: an ISO-8601 time or a duration ago (2h, 1d)."
)
WaitOption = typer.Option(2.0, "--wait", help="Stop reading after this many seconds without a record.")


def _usage_error(message: str) -> NoReturn:
    """One line on stderr and exit status 2, like any other usage error."""
    Console(stderr=True, soft_wrap=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _options(code: str | None, since: str | None, limit: int | None, wait: float) -> datetime | None:
    if code is not None and not _CODE.match(code):
        _usage_error(f"--code {code!r} is not a reason code: lowercase letters, digits and _ (e.g. bad_json)")
    if limit is not None and limit < 1:
        _usage_error(f"--limit must be 1 or more, got {limit}")
    if not 0.1 <= wait <= 600:
        _usage_error(f"--wait must be between 0.1 and 600 seconds, got {wait}")
    try:
        return parse_since(since)
    except ConfigError as exc:
        _usage_error(str(exc))


def _shown(data: bytes | None, width: int) -> str:
    if data is None:
        return "-"
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", data.decode("utf-8", "backslashreplace"))
    return text if len(text) <= width else text[: width - 1] + "…"


def _as_json(record: DeadLetterRecord) -> dict[str, Any]:
    def b64(data: bytes | None) -> str | None:
        return None if data is None else base64.b64encode(data).decode()

    return {
        "partition": record.partition,
        "offset": record.offset,
        "code": record.code,
        "reason": record.reason,
        "source_topic": record.source_topic,
        "source_partition": record.source_partition,
        "source_offset": record.source_offset,
        "failed_at": record.failed_at.isoformat() if record.failed_at else None,
        "key": None if record.key is None else record.key.decode("utf-8", "replace"),
        "value": None if record.value is None else record.value.decode("utf-8", "replace"),
        # Exact bytes, for values that are not UTF-8 (their text above is lossy).
        "key_b64": b64(record.key),
        "value_b64": b64(record.value),
    }


def _read(
    code: str | None, since: datetime | None, limit: int | None, wait: float
) -> tuple[Any, list[DeadLetterRecord]]:
    from storage.dead_letters import read_dead_letters, select

    settings = load_settings()
    records = select(read_dead_letters(settings.kafka, idle_s=wait), code=code, since=since, limit=limit)
    return settings, records


def _table(records: list[DeadLetterRecord], title: str) -> Table:
    table = Table(title=title)
    for column in ("at", "failed_at", "code", "source", "key"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    table.add_column("value", overflow="fold")
    for r in records:
        table.add_row(
            r.address,
            r.failed_at.strftime("%Y-%m-%d %H:%M:%S") if r.failed_at else "-",
            r.code,
            r.source,
            _shown(r.key, 24),
            _shown(r.reason.encode(), 80),
            _shown(r.value, 60),
        )
    return table


@dead_letter_app.command("list")
def list_command(
    code: str | None = CodeOption,
    since: str | None = SinceOption,
    limit: int | None = typer.Option(None, "--limit", help="Show at most this many (oldest first)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
    wait: float = WaitOption,
) -> None:
    """Show dead-lettered records: where they came from, when and why they failed."""
    since_at = _options(code, since, limit, wait)
    settings, records = _read(code, since_at, limit, wait)
    if as_json:
        import orjson

        for record in records:
            sys.stdout.write(orjson.dumps(_as_json(record)).decode() + "\n")
        return
    console = Console(soft_wrap=True)
    topic = settings.kafka.topics.dead_letter
    if not records:
        console.print(f"no dead letters in {topic}" + (" match the filters" if code or since else ""))
        return
    console.print(_table(records, f"dead letters in {topic}"))
    by_code: dict[str, int] = {}
    for r in records:
        by_code[r.code] = by_code.get(r.code, 0) + 1
    console.print(", ".join(f"{c}: {n}" for c, n in sorted(by_code.items())), highlight=False)


@dead_letter_app.command("replay")
def replay_command(
    code: str | None = CodeOption,
    since: str | None = SinceOption,
    limit: int | None = typer.Option(None, "--limit", help="Replay at most this many (oldest first)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be re-sent; send nothing."),
    wait: float = WaitOption,
) -> None:
    """Re-send matching dead letters (original key and value) to the topic they came from."""
    from storage.dead_letters import replay, replayable_topics

    since_at = _options(code, since, limit, wait)
    settings, records = _read(code, since_at, limit, wait)
    console = Console(soft_wrap=True)
    allowed = replayable_topics(settings.kafka)
    sendable = [r for r in records if r.source_topic in allowed]
    skipped = len(records) - len(sendable)
    if skipped:
        console.print(
            f"skipping {skipped} dead letters whose source topic is not one of {sorted(allowed)}",
            highlight=False,
        )
    if not sendable:
        console.print("nothing to replay" + (" (filters matched nothing)" if not records else ""))
        return
    if dry_run:
        console.print(_table(sendable, f"would replay {len(sendable)} dead letters (dry run)"))
        return
    sent = replay(settings.kafka, sendable)
    counts = ", ".join(f"{n} to {topic}" for topic, n in sorted(sent.items()))
    console.print(f"replayed {sum(sent.values())} dead letters: {counts}", highlight=False)
    if settings.kafka.topics.items in sent:
        console.print(
            "note: a replayed item update sets the item to its state at that time; "
            "re-send the latest catalog record if the item changed since",
            highlight=False,
        )
