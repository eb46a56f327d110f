"""Replay sources: real data sets read row by row into validated events, in timestamp order.

The files are parsed by the same readers the offline evaluation uses (``tooling.offline.datasets``);
replay adds what a stream needs: each row validated as an event with a stable id, each rejected row
kept with its line number and reason (nothing silently dropped), and Taobao's category ids as catalog
updates.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import StreamrecError
from core.events import InteractionEvent, ItemUpdate, ParseError, validate_interaction, validate_item_update
from core.ids import deterministic_event_id
from tooling.offline.datasets import (
    DATASETS,
    DEFAULT_DATA_DIR,
    GENERIC_OPTIONAL,
    GENERIC_REQUIRED,
    DatasetError,
    Parsed,
    RawRow,
    RowError,
    generic_csv_rows,
    movielens_csv_rows,
    movielens_udata_rows,
    taobao_rows,
)

SOURCES = ("movielens", "taobao", "csv")
__all__ = ["GENERIC_OPTIONAL", "GENERIC_REQUIRED", "SOURCES", "RowError", "SourceData", "load_source"]


class ReplaySourceError(StreamrecError):
    """The source file is missing or unreadable as a whole."""


@dataclass
class SourceData:
    path: Path
    events: list[InteractionEvent]  # sorted by timestamp; ties keep file order
    items: list[ItemUpdate] = field(default_factory=list)  # catalog updates, one per item
    errors: list[RowError] = field(default_factory=list)
    rows: int = 0

    def limited(self, limit: int | None) -> SourceData:
        """The first ``limit`` events in time order, with the catalog updates those events need."""
        if limit is None or limit >= len(self.events):
            return self
        events = self.events[:limit]
        used = {e.item_id for e in events}
        items = [u for u in self.items if u.item_id in used]
        return SourceData(path=self.path, events=events, items=items, errors=self.errors, rows=self.rows)


class _Collector:
    """Validates rows, gives them stable ids and records every rejected row with its reason."""

    def __init__(self, source: str, now: datetime | None) -> None:
        self.source = source
        self.now = now or datetime.now(UTC)
        self.events: list[InteractionEvent] = []
        self.errors: list[RowError] = []
        self.rows = 0
        self._seen: Counter[tuple[str, ...]] = Counter()

    def stable_id(self, *parts: str) -> str:
        # A data set may hold the same (user, item, type, time) twice: the occurrence number keeps
        # both while staying the same on every replay of the file.
        occurrence = self._seen[parts]
        self._seen[parts] += 1
        return deterministic_event_id(self.source, *parts, occurrence)

    def add(self, line: int, data: dict[str, Any]) -> InteractionEvent | None:
        result = validate_interaction(data, now=self.now)
        if isinstance(result, ParseError):
            self.errors.append(RowError(line, result.reason))
            return None
        self.events.append(result)
        return result

    def reject(self, line: int, reason: str) -> None:
        self.errors.append(RowError(line, reason))

    def finish(self, path: Path, items: list[ItemUpdate] | None = None) -> SourceData:
        events = sorted(self.events, key=lambda e: e.timestamp)
        return SourceData(path=path, events=events, items=items or [], errors=self.errors, rows=self.rows)


@contextmanager
def _source_errors() -> Iterator[None]:
    # The shared readers raise DatasetError for a file that cannot be read as a whole.
    try:
        yield
    except DatasetError as exc:
        raise ReplaySourceError(str(exc)) from None


def _add_rows(col: _Collector, parsed: Iterable[Parsed]) -> list[tuple[RawRow, InteractionEvent]]:
    """Validates every readable row as an event with a stable id; records each rejected row."""
    accepted: list[tuple[RawRow, InteractionEvent]] = []
    with _source_errors():
        for row in parsed:
            col.rows += 1
            if isinstance(row, RowError):
                col.errors.append(row)
                continue
            data: dict[str, Any] = {
                "user_id": row.user_id,
                "item_id": row.item_id,
                "event_type": row.event_type,
            }
            if row.ts_ms is not None:
                data["timestamp"] = row.ts_ms
            if row.value is not None:
                data["value"] = row.value
            if row.session_id:
                data["session_id"] = row.session_id
            data["event_id"] = row.event_id or col.stable_id(
                row.user_id, row.item_id, row.event_type, str(row.ts_ms)
            )
            event = col.add(row.line, data)
            if event is not None:
                accepted.append((row, event))
    return accepted


def read_movielens_csv(path: Path, *, now: datetime | None = None) -> SourceData:
    """ml-latest-small ``ratings.csv``: userId,movieId,rating,timestamp (epoch seconds)."""
    col = _Collector("movielens", now)
    _add_rows(col, movielens_csv_rows(path))
    return col.finish(path)


def read_movielens_udata(path: Path, *, now: datetime | None = None) -> SourceData:
    """ML-100K ``u.data``: user, item, rating, epoch seconds, tab separated, no header."""
    col = _Collector("ml100k", now)
    _add_rows(col, movielens_udata_rows(path))
    return col.finish(path)


def read_taobao(path: Path, *, now: datetime | None = None) -> SourceData:
    """UserBehavior: user_id,item_id,category_id,behavior_type,timestamp (epoch seconds); each item's
    first category becomes one catalog update."""
    col = _Collector("taobao", now)
    categories: dict[str, str] = {}
    for row, _event in _add_rows(col, taobao_rows(path)):
        if row.category and row.item_id not in categories:
            categories[row.item_id] = row.category
    items = _item_updates(col, categories.items())
    return col.finish(path, items)


def _item_updates(col: _Collector, pairs: Iterable[tuple[str, str]]) -> list[ItemUpdate]:
    items: list[ItemUpdate] = []
    for item, category in pairs:
        update = validate_item_update({"item_id": item, "category": category})
        if isinstance(update, ParseError):
            col.reject(0, f"catalog update for item {item!r}: {update.reason}")
        else:
            items.append(update)
    return items


def read_generic_csv(path: Path, *, now: datetime | None = None) -> SourceData:
    """Header user_id,item_id,event_type,timestamp (epoch ms or ISO); optional event_id,session_id,value."""
    col = _Collector("csv", now)
    _add_rows(col, generic_csv_rows(path))
    return col.finish(path)


def resolve_path(source: str, path: Path | None, data_dir: Path | None) -> Path:
    """The file to replay: --path if given, else the data set's usual place under the data dir."""
    if source not in SOURCES:
        raise ReplaySourceError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if path is not None:
        if not path.is_file():
            raise ReplaySourceError(f"{path} not found; check --path")
        return path
    if source == "csv":
        raise ReplaySourceError(
            "the csv source needs --path FILE (header user_id,item_id,event_type,timestamp)"
        )
    base = data_dir or DEFAULT_DATA_DIR
    names = ["ml-latest-small", "ml-100k"] if source == "movielens" else ["taobao"]
    candidates = [base / DATASETS[n] for n in names]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " or ".join(str(c) for c in candidates)
    raise ReplaySourceError(f"no {source} data found at {tried}; pass --path FILE or --data-dir DIR")


def load_source(
    source: str,
    path: Path | None = None,
    data_dir: Path | None = None,
    *,
    limit: int | None = None,
    now: datetime | None = None,
) -> SourceData:
    file = resolve_path(source, path, data_dir)
    if source == "movielens":
        reader = (
            read_movielens_udata if file.name == "u.data" or file.suffix == ".data" else read_movielens_csv
        )
    elif source == "taobao":
        reader = read_taobao
    else:
        reader = read_generic_csv
    try:
        data = reader(file, now=now)
    except UnicodeDecodeError as exc:
        raise ReplaySourceError(f"{file}: not valid text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ReplaySourceError(f"{file}: not valid CSV ({exc})") from None
    return data.limited(limit)


def iter_errors(data: SourceData, first: int = 20) -> Iterator[str]:
    """Human lines for the rejected rows: the first ``first`` in full, then a count."""
    for err in data.errors[:first]:
        where = f"line {err.row}" if err.row else "catalog"
        yield f"{data.path.name} {where}: {err.reason}"
    if len(data.errors) > first:
        yield f"... and {len(data.errors) - first} more rejected rows"
