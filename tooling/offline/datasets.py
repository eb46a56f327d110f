"""The data-set readers: the offline evaluation data sets and a generic events CSV (never copied into
the repo; read from ``--data-dir`` or a path).

One parser per file format yields, row by row, either a ``RawRow`` or a ``RowError`` (the row's line
number and why it cannot be read). Both users of the files build on them: ``load_dataset`` (the
quality benchmark, the demo's comparison) turns the rows into a ``core.event_table.EventTable`` and
refuses a file with an unreadable row; ``tooling.producers.replay_sources`` validates each row as an
event and reports every rejected row.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np

from core.event_table import EventTable, Row

logger = logging.getLogger(__name__)


class DatasetError(Exception):
    """A data file is missing or malformed."""


DATASETS: dict[str, str] = {
    "ml-latest-small": "movielens-latest-small/ratings.csv",
    "ml-100k": "movielens-100k/u.data",
    "taobao": "taobao-userbehavior-head/UserBehavior_head.csv",
    "amazon-magazine": "amazon-2018-magazine-subscriptions/Magazine_Subscriptions.csv",
}
TAOBAO_BEHAVIOR = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}
# ../shared/data next to the repository (tooling/offline/datasets.py is three levels below it).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
GENERIC_REQUIRED = ("user_id", "item_id", "event_type", "timestamp")
GENERIC_OPTIONAL = ("event_id", "session_id", "value")
MOVIELENS_HEADER = ["userId", "movieId", "rating", "timestamp"]


@dataclass(frozen=True, slots=True)
class RawRow:
    """One readable row, not yet validated as an event."""

    line: int  # line number in the file, header = line 1
    user_id: str
    item_id: str
    event_type: str
    value: float | None
    ts_ms: int | None  # None: the generic CSV's timestamp cell is empty
    event_id: str = ""
    session_id: str = ""
    category: str = ""  # Taobao's category id


@dataclass(frozen=True)
class RowError:
    row: int  # line number in the file, header = line 1
    reason: str


Parsed = RawRow | RowError


def parse_timestamp_ms(text: str) -> int:
    """Epoch milliseconds (digits) or ISO-8601 (naive means UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DatasetError(f"timestamp {text!r} is neither epoch milliseconds nor ISO-8601") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _open(path: Path, encoding: str = "utf-8") -> IO[str]:
    if not Path(path).is_file():
        raise DatasetError(f"{path} not found")
    return open(path, newline="", encoding=encoding)


def _rating_row(line: int, user: str, item: str, rating: str, ts: str) -> Parsed:
    try:
        value = float(rating)
    except ValueError:
        return RowError(line, f"rating {rating!r} is not a number")
    try:
        ts_ms = int(ts.strip()) * 1000
    except ValueError:
        return RowError(line, f"timestamp {ts!r} is not epoch seconds")
    return RawRow(line, user.strip(), item.strip(), "rate", value, ts_ms)


def movielens_csv_rows(path: Path) -> Iterator[Parsed]:
    """ml-latest-small ``ratings.csv``: userId,movieId,rating,timestamp (epoch seconds)."""
    with _open(path) as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != MOVIELENS_HEADER:
            raise DatasetError(f"{path}: expected the header {','.join(MOVIELENS_HEADER)}")
        for line, rec in enumerate(reader, start=2):
            if len(rec) != 4:
                yield RowError(line, f"expected 4 columns, got {len(rec)}")
            else:
                yield _rating_row(line, *rec)


def movielens_udata_rows(path: Path) -> Iterator[Parsed]:
    """ML-100K ``u.data``: user, item, rating, epoch seconds, tab separated, no header."""
    with _open(path, encoding="latin-1") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            parts = text.rstrip("\r\n").split("\t")
            if len(parts) != 4:
                yield RowError(line, f"expected 4 tab-separated columns, got {len(parts)}")
            else:
                yield _rating_row(line, *parts)


def amazon_ratings_rows(path: Path) -> Iterator[Parsed]:
    """Amazon Review Data (2018) "ratings only" file: item,user,rating,timestamp (epoch seconds at day
    resolution), no header. Repeated (item, user) pairs are kept as published."""
    with _open(path) as fh:
        for line, rec in enumerate(csv.reader(fh), start=1):
            if len(rec) != 4:
                yield RowError(line, f"expected 4 columns item,user,rating,timestamp, got {len(rec)}")
            else:
                item, user, rating, ts = rec
                yield _rating_row(line, user, item, rating, ts)


def taobao_rows(path: Path) -> Iterator[Parsed]:
    """UserBehavior: user_id,item_id,category_id,behavior_type,timestamp (epoch seconds)."""
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        needed = {"user_id", "item_id", "category_id", "behavior_type", "timestamp"}
        missing = needed - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: header lacks {', '.join(sorted(missing))}")
        for line, rec in enumerate(reader, start=2):
            behavior = (rec["behavior_type"] or "").strip()
            kind = TAOBAO_BEHAVIOR.get(behavior)
            if kind is None:
                yield RowError(line, f"behavior_type {behavior!r} is not one of {', '.join(TAOBAO_BEHAVIOR)}")
                continue
            try:
                ts_ms = int((rec["timestamp"] or "").strip()) * 1000
            except ValueError:
                yield RowError(line, f"timestamp {rec['timestamp']!r} is not epoch seconds")
                continue
            user, item = (rec["user_id"] or "").strip(), (rec["item_id"] or "").strip()
            category = (rec["category_id"] or "").strip()
            yield RawRow(line, user, item, kind, None, ts_ms, category=category)


def generic_csv_rows(path: Path) -> Iterator[Parsed]:
    """Header user_id,item_id,event_type,timestamp (epoch ms or ISO); optional event_id,session_id,value."""
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        reader.fieldnames = fields
        missing = [f for f in GENERIC_REQUIRED if f not in fields]
        if missing:
            raise DatasetError(
                f"{path}: header lacks {', '.join(missing)} (needs {','.join(GENERIC_REQUIRED)}, "
                f"optional {','.join(GENERIC_OPTIONAL)})"
            )
        for line, rec in enumerate(reader, start=2):
            if None in rec:
                yield RowError(line, f"more columns than the header's {len(fields)}")
                continue
            text = {k: (v or "").strip() for k, v in rec.items() if k in GENERIC_REQUIRED + GENERIC_OPTIONAL}
            try:
                ts_ms = parse_timestamp_ms(text["timestamp"]) if text["timestamp"] else None
            except DatasetError as exc:
                yield RowError(line, str(exc))
                continue
            value = None
            if text.get("value"):
                try:
                    value = float(text["value"])
                except ValueError:
                    yield RowError(line, f"value {text['value']!r} is not a number")
                    continue
            yield RawRow(
                line,
                text["user_id"],
                text["item_id"],
                text["event_type"],
                value,
                ts_ms,
                event_id=text.get("event_id", ""),
                session_id=text.get("session_id", ""),
            )


# ---------------------------------------------------------------- whole tables for offline evaluation


def table_of(path: Path, parsed: Iterator[Parsed]) -> EventTable:
    """The rows as one table; the first unreadable row (or a row without a timestamp) refuses the file."""
    rows: list[Row] = []
    for item in parsed:
        if isinstance(item, RowError):
            raise DatasetError(f"{path}:{item.row}: {item.reason}")
        if item.ts_ms is None:
            raise DatasetError(f"{path}:{item.line}: the timestamp is empty")
        rows.append((item.user_id, item.item_id, item.event_type, item.value, item.ts_ms))
    if not rows:
        raise DatasetError("the data file holds no events")
    users, items, types, values, ts = zip(*rows, strict=True)
    return EventTable(
        user_id=np.array(users, dtype=str),
        item_id=np.array(items, dtype=str),
        event_type=np.array(types, dtype=str),
        value=np.array([np.nan if v is None else v for v in values], dtype=np.float64),
        ts_ms=np.array(ts, dtype=np.int64),
    )


def dataset_path(name: str, data_dir: Path) -> Path:
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)} or csv")
    path = Path(data_dir) / DATASETS[name]
    if not path.is_file():
        raise DatasetError(f"{path} not found (data sets live in ../shared/data; see its README.md)")
    return path


def read_movielens_latest(path: Path) -> EventTable:
    return table_of(path, movielens_csv_rows(path))


def read_movielens_100k(path: Path) -> EventTable:
    return table_of(path, movielens_udata_rows(path))


def read_taobao(path: Path) -> EventTable:
    return table_of(path, taobao_rows(path))


def read_amazon_ratings(path: Path) -> EventTable:
    return table_of(path, amazon_ratings_rows(path))


def read_events_csv(path: Path) -> EventTable:
    """Header ``user_id,item_id,event_type,timestamp`` plus optional ``event_id,session_id,value``."""
    table = table_of(path, generic_csv_rows(Path(path)))
    logger.info("dataset_read path=%s events=%d", path, len(table))
    return table


def load_dataset(name: str, data_dir: Path | None = None, path: Path | None = None) -> EventTable:
    """``name`` is ml-latest-small, ml-100k, taobao, amazon-magazine, or csv (then ``path`` is the file)."""
    if name == "csv":
        if path is None:
            raise DatasetError("the csv data set needs a path")
        return read_events_csv(path)
    file = dataset_path(name, data_dir or DEFAULT_DATA_DIR)
    readers = {
        "ml-latest-small": read_movielens_latest,
        "ml-100k": read_movielens_100k,
        "taobao": read_taobao,
        "amazon-magazine": read_amazon_ratings,
    }
    table = readers[name](file)
    logger.info("dataset_read name=%s events=%d", name, len(table))
    return table
