"""Replay sources: real data sets read row by row into validated events, in timestamp order.

``tooling.offline.datasets`` loads whole data sets into numpy tables for offline evaluation; replay needs
more than that: each bad row's line number and reason (nothing silently dropped), Taobao's
category ids for the catalog, and the optional event_id/session_id columns of a generic CSV. So this
module reads the files itself, sharing the data set layout and the Taobao mapping with
``tooling.offline.datasets``.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator
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
    TAOBAO_BEHAVIOR,
    DatasetError,
    parse_timestamp_ms,
)

SOURCES = ("movielens", "taobao", "csv")
GENERIC_REQUIRED = ("user_id", "item_id", "event_type", "timestamp")
GENERIC_OPTIONAL = ("event_id", "session_id", "value")


class ReplaySourceError(StreamrecError):
    """The source file is missing or unreadable as a whole."""


@dataclass(frozen=True)
class RowError:
    row: int  # line number in the file, header = line 1
    reason: str


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


def _open_text(path: Path, encoding: str = "utf-8") -> Any:
    if not path.is_file():
        raise ReplaySourceError(f"{path} not found; pass --path FILE or --data-dir DIR (see ../shared/data)")
    return open(path, newline="", encoding=encoding)


def _seconds_to_ms(text: str) -> int:
    return int(text.strip()) * 1000


def _rating_event(col: _Collector, line: int, user: str, item: str, rating: str, ts: str) -> None:
    try:
        value = float(rating)
    except ValueError:
        col.reject(line, f"rating {rating!r} is not a number")
        return
    try:
        ts_ms = _seconds_to_ms(ts)
    except ValueError:
        col.reject(line, f"timestamp {ts!r} is not epoch seconds")
        return
    user, item = user.strip(), item.strip()
    col.add(
        line,
        {
            "event_id": col.stable_id(user, item, "rate", str(ts_ms)),
            "event_type": "rate",
            "user_id": user,
            "item_id": item,
            "timestamp": ts_ms,
            "value": value,
        },
    )


def read_movielens_csv(path: Path, *, now: datetime | None = None) -> SourceData:
    """ml-latest-small ``ratings.csv``: userId,movieId,rating,timestamp (epoch seconds)."""
    col = _Collector("movielens", now)
    with _open_text(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != ["userId", "movieId", "rating", "timestamp"]:
            raise ReplaySourceError(f"{path}: expected the header userId,movieId,rating,timestamp")
        for line, rec in enumerate(reader, start=2):
            col.rows += 1
            if len(rec) != 4:
                col.reject(line, f"expected 4 columns, got {len(rec)}")
                continue
            _rating_event(col, line, *rec)
    return col.finish(path)


def read_movielens_udata(path: Path, *, now: datetime | None = None) -> SourceData:
    """ML-100K ``u.data``: user, item, rating, epoch seconds, tab separated, no header."""
    col = _Collector("ml100k", now)
    with _open_text(path, encoding="latin-1") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            col.rows += 1
            parts = text.rstrip("\r\n").split("\t")
            if len(parts) != 4:
                col.reject(line, f"expected 4 tab-separated columns, got {len(parts)}")
                continue
            _rating_event(col, line, *parts)
    return col.finish(path)


def read_taobao(path: Path, *, now: datetime | None = None) -> SourceData:
    """UserBehavior: user_id,item_id,category_id,behavior_type,timestamp (epoch seconds)."""
    col = _Collector("taobao", now)
    categories: dict[str, str] = {}
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        needed = {"user_id", "item_id", "category_id", "behavior_type", "timestamp"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise ReplaySourceError(f"{path}: header lacks {', '.join(sorted(missing))}")
        for line, rec in enumerate(reader, start=2):
            col.rows += 1
            behavior = (rec["behavior_type"] or "").strip()
            kind = TAOBAO_BEHAVIOR.get(behavior)
            if kind is None:
                col.reject(line, f"behavior_type {behavior!r} is not one of {', '.join(TAOBAO_BEHAVIOR)}")
                continue
            try:
                ts_ms = _seconds_to_ms(rec["timestamp"] or "")
            except ValueError:
                col.reject(line, f"timestamp {rec['timestamp']!r} is not epoch seconds")
                continue
            user, item = (rec["user_id"] or "").strip(), (rec["item_id"] or "").strip()
            event = col.add(
                line,
                {
                    "event_id": col.stable_id(user, item, kind, str(ts_ms)),
                    "event_type": kind,
                    "user_id": user,
                    "item_id": item,
                    "timestamp": ts_ms,
                },
            )
            category = (rec["category_id"] or "").strip()
            if event is not None and category and item not in categories:
                categories[item] = category
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
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        reader.fieldnames = fields
        missing = [f for f in GENERIC_REQUIRED if f not in fields]
        if missing:
            raise ReplaySourceError(
                f"{path}: header lacks {', '.join(missing)} (needs {','.join(GENERIC_REQUIRED)}, "
                f"optional {','.join(GENERIC_OPTIONAL)})"
            )
        for line, rec in enumerate(reader, start=2):
            col.rows += 1
            if None in rec:
                col.reject(line, f"more columns than the header's {len(fields)}")
                continue
            text = {k: (v or "").strip() for k, v in rec.items() if k in GENERIC_REQUIRED + GENERIC_OPTIONAL}
            try:
                ts_ms = parse_timestamp_ms(text["timestamp"]) if text["timestamp"] else None
            except DatasetError as exc:
                col.reject(line, str(exc))
                continue
            data: dict[str, Any] = {
                "user_id": text["user_id"],
                "item_id": text["item_id"],
                "event_type": text["event_type"],
            }
            if ts_ms is not None:
                data["timestamp"] = ts_ms
            if text.get("value"):
                try:
                    data["value"] = float(text["value"])
                except ValueError:
                    col.reject(line, f"value {text['value']!r} is not a number")
                    continue
            if text.get("session_id"):
                data["session_id"] = text["session_id"]
            data["event_id"] = text.get("event_id") or col.stable_id(
                text["user_id"], text["item_id"], text["event_type"], str(ts_ms)
            )
            col.add(line, data)
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
