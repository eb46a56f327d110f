"""Segment popularity (model.segment_popularity, retrain.segments): the lists, the cold-start
decision, the artifact file, and the retrain run that records them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.errors import ArtifactError
from core.event_table import EventTable
from core.settings import EventWeights, ModelSettings
from model.artifact_erasure import scrub_files
from model.segment_popularity import (
    FILE_NAME,
    SegmentPopularity,
    decide_segments,
    new_user_first_items,
    popularity_lists,
    segments_from_files,
    topped_up,
)
from retrain.pipeline import run_retrain
from retrain.segments import SegmentConfig, segment_stage, user_segments
from storage.event_store_memory import InMemoryEventStore
from storage.model_registry_memory import InMemoryModelRegistry
from storage.shoppers import InMemoryShopperStore
from tests.unit.test_retrain_erasure import artifact_files
from tests.unit.test_retrain_pipeline import CONFIG, NOW, PopularityTrainer

W = EventWeights(view=1.0, purchase=5.0)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def table(rows: list[tuple[str, str, str, int]]) -> EventTable:
    """(user, item, event type, minute) rows."""
    return EventTable(
        user_id=np.array([r[0] for r in rows], dtype=str),
        item_id=np.array([r[1] for r in rows], dtype=str),
        event_type=np.array([r[2] for r in rows], dtype=str),
        value=np.full(len(rows), np.nan),
        ts_ms=np.array(
            [int((T0 + timedelta(minutes=r[3])).timestamp() * 1000) for r in rows], dtype=np.int64
        ),
    )


def test_lists_weigh_events_like_popularity_and_need_enough_shoppers_per_segment() -> None:
    rows = [
        ("a1", "x", "view", 0),
        ("a1", "y", "purchase", 1),  # 5 for y
        ("a2", "x", "view", 2),
        ("a2", "x", "view", 3),
        ("b1", "z", "view", 4),
        ("b2", "z", "view", 5),
        ("c1", "w", "view", 6),  # segment c: one shopper only
        ("n1", "x", "view", 7),  # no segment
    ]
    segs = {"a1": "A", "a2": "A", "b1": "B", "b2": "B", "c1": "C"}
    global_list, lists = popularity_lists(table(rows), segs, W, min_users=2)
    assert global_list == (("y", 5.0), ("x", 4.0), ("z", 2.0), ("w", 1.0))
    assert lists == {"A": (("y", 5.0), ("x", 3.0)), "B": (("z", 2.0),)}
    # Ties are broken by item id, and depth cuts the list.
    _, lists = popularity_lists(table(rows), segs, W, min_users=1, depth=1)
    assert lists["C"] == (("w", 1.0),) and lists["A"] == (("y", 5.0),)


def test_new_user_first_items_are_the_first_distinct_items_of_shoppers_new_after_the_cut() -> None:
    rows = [
        ("old", "a", "view", 0),
        ("old", "b", "view", 20),  # old shopper: not new
        ("new", "c", "view", 25),
        ("new", "c", "view", 26),
        ("new", "d", "view", 27),
        ("new", "e", "view", 28),
        ("late", "f", "view", 30),
    ]
    cut = int((T0 + timedelta(minutes=10)).timestamp() * 1000)
    assert new_user_first_items(table(rows), cut, n=2) == {"new": {"c", "d"}, "late": {"f"}}


def test_topped_up_fills_from_the_rest_without_repeats() -> None:
    assert topped_up([("a", 1.0), ("b", 1.0)], [("b", 9.0), ("c", 8.0), ("d", 7.0)], 3) == ["a", "b", "c"]


GLOBAL = (("g1", 9.0), ("g2", 8.0), ("g3", 7.0))
LISTS = {"A": (("a1", 3.0), ("a2", 2.0)), "B": (("b1", 3.0),)}


def test_segments_win_when_new_shoppers_take_their_segment_items() -> None:
    targets = {f"u{i}": {"a1"} for i in range(5)} | {f"v{i}": {"b1"} for i in range(5)}
    segs = {u: ("A" if u.startswith("u") else "B") for u in targets}
    got = decide_segments("segment", GLOBAL, LISTS, targets, segs, min_eval_users=10)
    assert got.wins and got.eval_users == 10
    assert got.segment_ndcg == pytest.approx(1.0) and got.global_ndcg == 0.0
    assert got.reason.startswith("segment popularity wins")
    assert got.interval is not None and got.interval[0] > 0  # every shopper gains: a clear interval


def test_global_is_kept_when_it_does_as_well_or_evidence_is_short() -> None:
    targets = {f"u{i}": {"g1"} for i in range(10)}
    segs = dict.fromkeys(targets, "A")
    got = decide_segments("segment", GLOBAL, LISTS, targets, segs, min_eval_users=10)
    assert not got.wins and got.global_ndcg == pytest.approx(1.0) and got.segment_ndcg < 1.0  # type: ignore[operator]
    winning = {f"u{i}": {"a1"} for i in range(3)}
    short = decide_segments("segment", GLOBAL, LISTS, winning, dict.fromkeys(winning, "A"), min_eval_users=10)
    assert not short.wins and "too little evidence" in short.reason
    # Shoppers without a segment (or in one without a list) are not what the decision is about.
    none = decide_segments("segment", GLOBAL, LISTS, winning, {"u0": "Z"}, min_eval_users=1)
    assert not none.wins and none.eval_users == 0
    empty = decide_segments("segment", GLOBAL, {}, winning, dict.fromkeys(winning, "A"), min_eval_users=1)
    assert not empty.wins and "enough training shoppers" in empty.reason


def test_the_artifact_file_round_trips_and_bad_files_are_artifact_errors() -> None:
    seg = SegmentPopularity("segment", True, "segment popularity wins", 0.5, 0.25, 40, LISTS)
    back = segments_from_files({FILE_NAME: seg.to_bytes()})
    assert back == seg and back.list_for("A") == LISTS["A"] and back.list_for("nope") is None
    assert segments_from_files({}) is None
    assert seg.summary()["segments"] == 2 and "lists" not in seg.summary()
    for bad in (b"not json", b"{}", b'{"format_version": 9}', b'{"format_version": 1, "lists": 3}'):
        with pytest.raises(ArtifactError, match=FILE_NAME):
            SegmentPopularity.from_bytes(bad)


def test_segment_stage_reads_stringified_values_leaves_erased_out_and_survives_a_failing_store() -> None:
    store = InMemoryShopperStore()
    store.put_attributes("a", {"segment": "A"}, T0)
    store.put_attributes("b", {"segment": 3}, T0)
    store.put_attributes("c", {"segment": None}, T0)
    store.put_attributes("gone", {"segment": "A"}, T0)
    config = SegmentConfig(store, "segment", min_users=1, min_eval_users=1)
    assert user_segments(config, {"gone"}) == {"a": "A", "b": "3"}

    class Broken:
        def attribute_values(self, name: str) -> dict[str, object]:
            raise ConnectionError("mongo is down")

    broken = dataclasses.replace(config, source=Broken())
    got = segment_stage(broken, table([("a", "x", "view", 0)]), {}, W, set())
    assert not got.wins and "unreadable" in got.reason


def _store_with_segments(shoppers: InMemoryShopperStore) -> InMemoryEventStore:
    """Old shoppers and shoppers new in the held-out part; in segment A everybody buys a-items, in B
    b-items, and a-items are globally more popular (A is bigger): only segment lists serve B well."""
    store = InMemoryEventStore()
    docs = []
    start = NOW - timedelta(days=5)
    rng = np.random.default_rng(1)

    def add(user: str, seg: str, day: float, n: int) -> None:
        shoppers.put_attributes(user, {"segment": seg}, T0)
        items = rng.choice(6, size=n, replace=False)
        for j, item in enumerate(items):
            ts = start + timedelta(days=day, minutes=j)
            docs.append(
                {
                    "_id": f"{user}-{j}",
                    "user_id": user,
                    "item_id": f"{seg.lower()}{item}",
                    "event_type": "view",
                    "ts": ts,
                    "ts_ms": int(ts.timestamp() * 1000),
                    "value": None,
                }
            )

    for u in range(60):
        add(f"old-a{u}", "A", rng.uniform(0, 3.5), 4)
    for u in range(30):
        add(f"old-b{u}", "B", rng.uniform(0, 3.5), 4)
    for u in range(30):  # new in the last day, the held-out part; about half in each segment
        add(f"new{u}", "A" if u % 2 else "B", 4.2 + u / 100, 3)
    store.insert_events(docs)
    return store


def test_retrain_records_the_decision_and_the_lists_in_the_artifact_and_the_registry() -> None:
    shoppers = InMemoryShopperStore()
    store, reg = _store_with_segments(shoppers), InMemoryModelRegistry()
    config = SegmentConfig(shoppers, ModelSettings().segment_attribute, min_users=5, min_eval_users=10)
    result = run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW, segments=config)
    assert result.version is not None
    summary = reg.get(result.version).metrics["segment_popularity"]
    assert summary["wins"] is True and summary["eval_users"] >= 10, summary
    assert summary["segment_ndcg@10"] > summary["global_ndcg@10"]
    seg = segments_from_files(reg.load_files(result.version))
    assert seg is not None and seg.wins and set(seg.lists) == {"A", "B"}
    assert all(item.startswith("b") for item, _ in seg.lists["B"])
    # Segments too small for a list: the global list is kept, and the run is otherwise the same.
    small = dataclasses.replace(config, min_users=500)
    plain = run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW, segments=small).version
    assert plain is not None and reg.get(plain).metrics["segment_popularity"]["wins"] is False
    # Without segments configured, nothing about them is published.
    bare = run_retrain(store, reg, PopularityTrainer(), CONFIG, now=NOW).version
    assert bare is not None and FILE_NAME not in reg.load_files(bare)
    assert "segment_popularity" not in reg.get(bare).metrics


def test_erasure_scrub_keeps_the_segment_file() -> None:
    files = artifact_files(1) | {FILE_NAME: b'{"kept": true}'}
    scrubbed, removed = scrub_files(files, {"bob"})
    assert removed == 1 and scrubbed is not None and scrubbed[FILE_NAME] == b'{"kept": true}'
