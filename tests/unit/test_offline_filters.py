"""--min-item-users and the Amazon ratings reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.event_table import EventTable
from tooling.offline.datasets import DEFAULT_DATA_DIR, DatasetError, load_dataset, read_amazon_ratings
from tooling.offline.filters import drop_rare_items


def _table(pairs: list[tuple[str, str]]) -> EventTable:
    n = len(pairs)
    return EventTable(
        user_id=np.array([u for u, _ in pairs]),
        item_id=np.array([i for _, i in pairs]),
        event_type=np.array(["view"] * n),
        value=np.full(n, np.nan),
        ts_ms=np.arange(n, dtype=np.int64),
    )


def test_items_with_too_few_distinct_users_are_dropped() -> None:
    # i1: 3 users; i2: 1 user seen 3 times (repeats are not more users); i3: 2 users.
    i1 = [("u1", "i1"), ("u2", "i1"), ("u3", "i1")]
    i2 = [("u1", "i2")] * 3
    i3 = [("u2", "i3"), ("u3", "i3")]
    table = _table(i1 + i2 + i3)
    kept = drop_rare_items(table, 3)
    assert set(kept.item_id.tolist()) == {"i1"} and len(kept) == 3
    assert set(drop_rare_items(table, 2).item_id.tolist()) == {"i1", "i3"}
    assert drop_rare_items(table, 1) is table
    with pytest.raises(ValueError, match="min_users"):
        drop_rare_items(table, 0)


def test_amazon_ratings_file_reads_item_user_rating_seconds(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("B001,A1,5.0,1005177600\nB002,A1,3.0,1004486400\n")
    table = read_amazon_ratings(path)
    assert table.user_id.tolist() == ["A1", "A1"] and table.item_id.tolist() == ["B001", "B002"]
    assert table.ts_ms[0] == 1_005_177_600_000 and table.value.tolist() == [5.0, 3.0]
    assert set(table.event_type.tolist()) == {"rate"}
    path.write_text("B001,A1,5.0\n")
    with pytest.raises(DatasetError, match=r"ratings.csv:1: expected 4 columns"):
        read_amazon_ratings(path)


def test_the_shared_amazon_magazine_set() -> None:
    try:
        table = load_dataset("amazon-magazine", DEFAULT_DATA_DIR)
    except DatasetError as exc:
        pytest.skip(f"../shared/data not found: {exc}")
    assert len(table) == 89_689  # the published count, repeated pairs kept
    assert len(np.unique(table.user_id)) == 72_098 and len(np.unique(table.item_id)) == 2_428
