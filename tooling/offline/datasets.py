"""Readers for the offline evaluation data sets (never copied into the repo; read from ``--data-dir``).

Each reader returns a ``core.event_table.EventTable``: parallel numpy arrays of user id, item id, event
type, value (NaN when absent) and epoch milliseconds, i.e. rows of (user_id, item_id, event_type, value,
ts_ms).
"""

from __future__ import annotations

import csv
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from core.event_table import EventTable, Row

logger = logging.getLogger(__name__)


class DatasetError(Exception):
    """A data file is missing or malformed."""


DATASETS: dict[str, str] = {
    "ml-latest-small": "movielens-latest-small/ratings.csv",
    "ml-100k": "movielens-100k/u.data",
    "taobao": "taobao-userbehavior-head/UserBehavior_head.csv",
}
TAOBAO_BEHAVIOR = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}
# ../shared/data next to the repository (tooling/offline/datasets.py is three levels below it).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"


def _table(rows: list[Row]) -> EventTable:
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
    rows: list[Row] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            rows.append(
                (rec["userId"], rec["movieId"], "rate", float(rec["rating"]), int(rec["timestamp"]) * 1000)
            )
    return _table(rows)


def read_movielens_100k(path: Path) -> EventTable:
    rows: list[Row] = []
    with open(path, encoding="latin-1") as fh:
        for line in fh:
            parts = line.split("\t")
            if len(parts) != 4:
                continue
            rows.append((parts[0], parts[1], "rate", float(parts[2]), int(parts[3]) * 1000))
    return _table(rows)


def read_taobao(path: Path) -> EventTable:
    rows: list[Row] = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            kind = TAOBAO_BEHAVIOR.get(rec["behavior_type"])
            if kind is None:
                raise DatasetError(f"{path}: unknown behavior_type {rec['behavior_type']!r}")
            rows.append((rec["user_id"], rec["item_id"], kind, None, int(rec["timestamp"]) * 1000))
    return _table(rows)


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


def read_events_csv(path: Path) -> EventTable:
    """Header ``user_id,item_id,event_type,timestamp`` plus optional ``event_id,session_id,value``."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    rows: list[Row] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "item_id", "event_type", "timestamp"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{path}: header lacks {', '.join(sorted(missing))}")
        for line_no, rec in enumerate(reader, start=2):
            raw_value = (rec.get("value") or "").strip()
            try:
                value = float(raw_value) if raw_value else None
            except ValueError as exc:
                raise DatasetError(f"{path}:{line_no}: value {raw_value!r} is not a number") from exc
            ts = parse_timestamp_ms(rec["timestamp"])
            rows.append((rec["user_id"], rec["item_id"], rec["event_type"].strip(), value, ts))
    logger.info("dataset_read path=%s events=%d", path, len(rows))
    return _table(rows)


def load_dataset(name: str, data_dir: Path | None = None, path: Path | None = None) -> EventTable:
    """``name`` is ml-latest-small, ml-100k, taobao, or csv (then ``path`` is the file)."""
    if name == "csv":
        if path is None:
            raise DatasetError("the csv data set needs a path")
        return read_events_csv(path)
    file = dataset_path(name, data_dir or DEFAULT_DATA_DIR)
    readers = {
        "ml-latest-small": read_movielens_latest,
        "ml-100k": read_movielens_100k,
        "taobao": read_taobao,
    }
    table = readers[name](file)
    logger.info("dataset_read name=%s events=%d", name, len(table))
    return table
