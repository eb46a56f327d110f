"""Replay sources: parsing, Taobao mapping, generic CSV columns, rejected rows and stable ids."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.events import EventType
from tooling.offline.datasets import DEFAULT_DATA_DIR
from tooling.producers.replay_sources import (
    ReplaySourceError,
    iter_errors,
    load_source,
    read_generic_csv,
    read_movielens_csv,
    read_movielens_udata,
    read_taobao,
    resolve_path,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_movielens_csv_is_sorted_rates_with_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,11,3.5,964981247\n2,10,five,964981000\n"
        "3,12,2.0,\n",
    )
    data = read_movielens_csv(path, now=NOW)
    assert data.rows == 4
    assert [(e.user_id, e.item_id, e.value) for e in data.events] == [("1", "11", 3.5), ("1", "10", 4.0)]
    assert all(e.event_type is EventType.RATE for e in data.events)
    assert data.events[0].timestamp == datetime.fromtimestamp(964981247, tz=UTC)
    assert [(e.row, e.reason) for e in data.errors] == [
        (4, "rating 'five' is not a number"),
        (5, "timestamp '' is not epoch seconds"),
    ]


def test_udata_is_read_and_ids_are_deterministic(tmp_path: Path) -> None:
    path = write(tmp_path, "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\n")
    first = read_movielens_udata(path, now=NOW)
    second = read_movielens_udata(path, now=NOW)
    assert [e.event_id for e in first.events] == [e.event_id for e in second.events]
    assert len({e.event_id for e in first.events}) == 2
    assert first.events[0].user_id == "196" and first.events[0].value == 3.0
    assert [(e.row, e.reason) for e in first.errors] == [(3, "expected 4 tab-separated columns, got 2")]


def test_movielens_autodetects_file_kind(tmp_path: Path) -> None:
    (tmp_path / "movielens-100k").mkdir()
    write(tmp_path / "movielens-100k", "u.data", "1\t2\t5\t881250949\n")
    data = load_source("movielens", data_dir=tmp_path, now=NOW)
    assert data.path.name == "u.data" and len(data.events) == 1
    (tmp_path / "movielens-latest-small").mkdir()
    write(tmp_path / "movielens-latest-small", "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.5,9\n")
    assert load_source("movielens", data_dir=tmp_path, now=NOW).path.name == "ratings.csv"


def test_taobao_maps_behaviours_and_publishes_each_category_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "UserBehavior_head.csv",
        "user_id,item_id,category_id,behavior_type,timestamp\n"
        "1,100,7,pv,1511544070\n1,100,7,cart,1511544080\n1,101,8,fav,1511544090\n"
        "2,100,7,buy,1511544100\n2,102,9,like,1511544110\n2,100,7,pv,1511544070\n",
    )
    data = read_taobao(path, now=NOW)
    types = [(e.user_id, e.item_id, e.event_type) for e in data.events]
    assert types == [
        ("1", "100", EventType.VIEW),
        ("2", "100", EventType.VIEW),
        ("1", "100", EventType.ADD_TO_CART),
        ("1", "101", EventType.FAVORITE),
        ("2", "100", EventType.PURCHASE),
    ]
    assert [(u.item_id, u.category) for u in data.items] == [("100", "7"), ("101", "8")]
    assert [e.row for e in data.errors] == [6]
    assert "like" in data.errors[0].reason


def test_taobao_duplicate_rows_keep_distinct_stable_ids(tmp_path: Path) -> None:
    text = "user_id,item_id,category_id,behavior_type,timestamp\n1,5,3,pv,1511544070\n1,5,3,pv,1511544070\n"
    path = write(tmp_path, "tb.csv", text)
    ids = [e.event_id for e in read_taobao(path, now=NOW).events]
    assert len(set(ids)) == 2
    assert ids == [e.event_id for e in read_taobao(path, now=NOW).events]


def test_generic_csv_required_and_optional_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "events.csv",
        "user_id,item_id,event_type,timestamp,event_id,session_id,value\n"
        "u1,i1,view,1700000000000,,s1,\n"
        "u1,i2,rate,2023-11-14T22:13:21Z,my-id,,4.5\n"
        "u2,i1,purchase,2023-11-14T22:00:00,,,\n",
    )
    data = read_generic_csv(path, now=NOW)
    assert not data.errors
    by_item = {(e.user_id, e.item_id): e for e in data.events}
    view = by_item[("u1", "i1")]
    assert view.session_id == "s1" and view.value is None and view.event_id.startswith("csv-")
    assert view.ts_ms == 1_700_000_000_000
    rate = by_item[("u1", "i2")]
    assert rate.event_id == "my-id" and rate.value == 4.5
    assert by_item[("u2", "i1")].timestamp == datetime(2023, 11, 14, 22, 0, tzinfo=UTC)
    assert [e.ts_ms for e in data.events] == sorted(e.ts_ms for e in data.events)


def test_generic_csv_minimal_header(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,event_type,timestamp\nu,i,click,1700000000000\n")
    (event,) = read_generic_csv(path, now=NOW).events
    assert event.event_type is EventType.CLICK and event.session_id is None


def test_generic_csv_reports_every_bad_row_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bad.csv",
        "user_id,item_id,event_type,timestamp,value\n"
        "u1,i1,view,1700000000000,\n"  # 2 ok
        "u1,i1,teleport,1700000000000,\n"  # 3 unknown type
        "u1,i1,rate,1700000000000,\n"  # 4 rate without value
        "u1,i1,view,yesterday,\n"  # 5 bad timestamp
        ",i1,view,1700000000000,\n"  # 6 blank user
        "u1,i1,view,1700000000000,abc\n"  # 7 bad value
        "u1,i1,view,99999999999999,\n"  # 8 far future
        "u1,i1,view,1700000000000,,extra\n",  # 9 too many columns
    )
    data = read_generic_csv(path, now=NOW)
    assert len(data.events) == 1 and data.rows == 8
    reasons = {e.row: e.reason for e in data.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9]
    assert "teleport" in reasons[3]
    assert "value is required" in reasons[4]
    assert "yesterday" in reasons[5]
    assert "user_id" in reasons[6]
    assert "abc" in reasons[7]
    assert "future" in reasons[8]
    assert "columns" in reasons[9]
    lines = list(iter_errors(data, first=2))
    assert lines[0].startswith("bad.csv line 3:") and lines[-1] == "... and 5 more rejected rows"


def test_generic_csv_missing_header_column(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user,item_id,event_type,timestamp\nu,i,view,1\n")
    with pytest.raises(ReplaySourceError, match="header lacks user_id"):
        read_generic_csv(path, now=NOW)


def test_limit_keeps_earliest_events_and_their_items(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tb.csv",
        "user_id,item_id,category_id,behavior_type,timestamp\n1,5,3,pv,30\n1,6,3,pv,10\n1,7,4,pv,20\n",
    )
    data = load_source("taobao", path=path, limit=2, now=NOW)
    assert [e.item_id for e in data.events] == ["6", "7"]
    assert sorted(u.item_id for u in data.items) == ["6", "7"]


def test_missing_files_give_one_actionable_line(tmp_path: Path) -> None:
    with pytest.raises(ReplaySourceError, match="--path FILE or --data-dir"):
        resolve_path("movielens", None, tmp_path)
    with pytest.raises(ReplaySourceError, match="not found"):
        load_source("csv", path=tmp_path / "nope.csv")
    with pytest.raises(ReplaySourceError, match="needs --path"):
        resolve_path("csv", None, None)
    with pytest.raises(ReplaySourceError, match="unknown source"):
        resolve_path("imdb", None, None)


@pytest.mark.data
@pytest.mark.parametrize(
    ("source", "relative", "expected"),
    [
        ("movielens", "movielens-latest-small/ratings.csv", 100_836),
        ("movielens", "movielens-100k/u.data", 100_000),
        ("taobao", "taobao-userbehavior-head/UserBehavior_head.csv", 84_287),
    ],
)
def test_real_data_sets(source: str, relative: str, expected: int) -> None:
    path = DEFAULT_DATA_DIR / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent (the real data sets live in ../shared/data)")
    data = load_source(source, path=path)
    assert data.rows == expected
    assert len(data.events) + len(data.errors) == expected
    assert len(data.events) >= expected * 0.99
    assert len({e.event_id for e in data.events}) == len(data.events)
    assert [e.ts_ms for e in data.events[:1000]] == sorted(e.ts_ms for e in data.events[:1000])
    if source == "taobao":
        assert len(data.items) == len({e.item_id for e in data.events})
