from pathlib import Path

import numpy as np
import pytest

from tooling.offline.datasets import (
    DEFAULT_DATA_DIR,
    DatasetError,
    load_dataset,
    parse_timestamp_ms,
    read_events_csv,
)


def test_csv_reader_epoch_and_iso(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,timestamp,event_id,session_id,value\n"
        "u1,i1,view,1700000000000,e1,s1,\n"
        "u1,i2,rate,2023-11-14T22:13:20Z,e2,s1,4.5\n"
        "u2,i1,purchase,2023-11-14T22:13:20,e3,,\n"
    )
    table = read_events_csv(path)
    rows = list(table.rows())
    assert rows[0] == ("u1", "i1", "view", None, 1_700_000_000_000)
    assert rows[1] == ("u1", "i2", "rate", 4.5, 1_700_000_000_000)
    assert rows[2][4] == 1_700_000_000_000
    assert table.user_id.dtype.kind == "U" and table.ts_ms.dtype == np.int64


def test_csv_reader_rejects_bad_header_and_timestamp(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item\n1,2\n")
    with pytest.raises(DatasetError, match="header lacks"):
        read_events_csv(bad)
    with pytest.raises(DatasetError, match="neither"):
        parse_timestamp_ms("yesterday")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset("csv", path=tmp_path / "missing.csv")
    with pytest.raises(DatasetError, match="unknown data set"):
        load_dataset("nope", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("name", "n_events", "event_types"),
    [
        ("ml-latest-small", 100_836, {"rate"}),
        ("ml-100k", 100_000, {"rate"}),
        ("taobao", 84_287, {"view", "add_to_cart", "favorite", "purchase"}),
    ],
)
def test_real_datasets(name: str, n_events: int, event_types: set[str]) -> None:
    try:
        table = load_dataset(name, DEFAULT_DATA_DIR)
    except DatasetError as exc:
        pytest.skip(f"../shared/data not found: {exc}")
    assert len(table) == n_events
    assert set(np.unique(table.event_type).tolist()) == event_types
    assert table.ts_ms.min() > 10**11  # milliseconds, not seconds
    if name != "taobao":
        assert np.nanmin(table.value) >= 0.5
    else:
        assert np.isnan(table.value).all()


def test_an_unreadable_row_refuses_the_table_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,timestamp,value\nu1,i1,view,1700000000000,\nu1,i2,rate,1,abc\n"
    )
    with pytest.raises(DatasetError, match=r"events\.csv:3: value 'abc' is not a number"):
        read_events_csv(path)
    path.write_text("user_id,item_id,event_type,timestamp\nu1,i1,view,\n")
    with pytest.raises(DatasetError, match=r":2: the timestamp is empty"):
        read_events_csv(path)


def test_replay_and_the_offline_table_read_a_file_alike(tmp_path: Path) -> None:
    # One parser per format serves both (tooling.offline.datasets); replay adds validation on top.
    from tooling.offline.datasets import read_movielens_latest
    from tooling.producers.replay_sources import load_source

    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,10,4.0,1700000000\n2,10,3.5,1600000000\n")
    rows = sorted(read_movielens_latest(path).rows(), key=lambda r: r[4])
    events = load_source("movielens", path=path).events
    assert [(e.user_id, e.item_id, e.event_type, e.value) for e in events] == [r[:4] for r in rows]
    assert [int(e.timestamp.timestamp() * 1000) for e in events] == [r[4] for r in rows]
