"""Which data set `streamrec demo` streams and how it is read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tooling.demo.data import (
    EXIT_EVENT_CAP,
    SIMULATE_DEFAULT_EVENTS,
    DemoDataError,
    choose_dataset,
    event_cap,
    load_demo_data,
    movielens_catalog,
    simulated,
)


def write_movielens(tmp_path: Path) -> Path:
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,5.0,964982224\n2,10,3.5,964983000\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n10,"GoldenEye (1995)",Action|Adventure\n'
        '20,"Heat, The (1995)",(no genres listed)\n'
        "30,Unrated,Drama\n"
    )
    return ratings


def test_choose_dataset(tmp_path: Path) -> None:
    assert choose_dataset("taobao", None) == "taobao"
    assert choose_dataset(None, tmp_path / "ratings.csv") == "movielens"
    assert choose_dataset(None, None, data_dir=tmp_path) == "simulate"
    with pytest.raises(DemoDataError, match="unknown --dataset"):
        choose_dataset("nope", None)
    with pytest.raises(DemoDataError, match="cannot be combined"):
        choose_dataset("simulate", tmp_path / "f.csv")


def test_choose_dataset_finds_movielens_in_the_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "movielens-latest-small"
    target.mkdir()
    write_movielens(target)
    assert choose_dataset(None, None, data_dir=tmp_path) == "movielens"


def test_event_cap() -> None:
    assert event_cap(123, True, "movielens") == 123
    assert event_cap(None, True, "movielens") == EXIT_EVENT_CAP
    assert event_cap(None, False, "movielens") is None
    assert event_cap(None, False, "simulate") == event_cap(None, True, "simulate") == SIMULATE_DEFAULT_EVENTS
    # --exit streams the whole of ml-latest-small (100,836 events): all 610 users get judged.
    assert EXIT_EVENT_CAP >= 100_836


def test_movielens_gets_titles_and_first_genre(tmp_path: Path) -> None:
    data = load_demo_data("movielens", write_movielens(tmp_path), cap=None)
    assert len(data.events) == 3 and data.name == "movielens"
    assert data.titles() == {"10": "GoldenEye (1995)", "20": "Heat, The (1995)"}
    by_id = {u.item_id: u for u in data.items}
    assert by_id["10"].category == "Action" and by_id["20"].category is None
    # Only items that occur in the streamed events are sent to the catalog.
    assert "30" not in by_id
    assert movielens_catalog(tmp_path / "elsewhere" / "ratings.csv", {"10"}) == []


def test_cap_keeps_the_first_events_in_time(tmp_path: Path) -> None:
    data = load_demo_data("movielens", write_movielens(tmp_path), cap=1)
    assert [e.item_id for e in data.events] == ["20"]


def test_simulated_is_deterministic_and_sized() -> None:
    # Same inputs, same period → the same event ids (the period's end is part of each id).
    end = datetime(2026, 11, 1, tzinfo=UTC)
    a, b = simulated(500, end=end), simulated(500, end=end)
    assert len(a.events) == 500 and a.items
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    assert len({e.user_id for e in a.events}) <= 50


def test_simulated_period_end_is_remembered_beside_the_stack(tmp_path: Path) -> None:
    from datetime import timedelta

    from tooling.demo.data import simulated_period_end

    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    first = simulated_period_end(tmp_path, now)
    assert first == now
    # A re-run an hour later simulates the same period (same ids and content: nothing new stored).
    assert simulated_period_end(tmp_path, now + timedelta(hours=1)) == first
    # Days later the old period would be outside the training window: a new one starts.
    later = now + timedelta(days=4)
    assert simulated_period_end(tmp_path, later) == later
