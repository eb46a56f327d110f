"""Recall as serving uses the results: ties count as found, exclusions are applied before the top k."""

import faiss
import numpy as np

from model.ann_recall import ExactTopK, exact_search, per_query_recall, search_depth, served_lists
from model.index import AnnParams, build_index, set_search_effort, unit_rows


def test_a_tied_item_never_stands_in_for_a_missed_higher_one() -> None:
    truth = ExactTopK(np.array([[0.9, 0.5, 0.5]], np.float32), np.array([[7, 3, 4]]))
    # Found: the two tied items and another item tied with them, but not item 7 (0.9): 2 of 3.
    found_scores = np.array([[0.5, 0.5, 0.5]], np.float32)
    assert per_query_recall(found_scores, np.array([[3, 4, 11]]), truth)[0] == 2 / 3
    # Item 7 and any one of the tied items: 2 of 3; item 7 and two others tied with the 3rd: all.
    assert (
        per_query_recall(np.array([[0.9, 0.5, 0.1]], np.float32), np.array([[7, 11, 5]]), truth)[0] == 2 / 3
    )
    assert per_query_recall(np.array([[0.9, 0.5, 0.5]], np.float32), np.array([[7, 11, 12]]), truth)[0] == 1.0
    # A reported high score for an item exact search does not have is not believed.
    assert (
        per_query_recall(np.array([[0.95, 0.5, 0.5]], np.float32), np.array([[8, 3, 4]]), truth)[0] == 2 / 3
    )


def test_served_lists_drop_each_querys_own_items_and_pad() -> None:
    scores = np.array([[5, 4, 3, 2], [5, 4, 3, 2]], np.float32)
    ids = np.array([[1, 2, 3, 4], [9, 8, -1, -1]])
    out_scores, out_ids = served_lists(scores, ids, [np.array([2, 4]), np.array([9])], 3)
    assert out_ids.tolist() == [[1, 3, -1], [8, -1, -1]]
    assert out_scores[0, :2].tolist() == [5, 3] and np.isneginf(out_scores[0, 2])
    assert served_lists(scores, ids, None, 2)[1].tolist() == [[1, 2], [9, 8]]
    assert search_depth(50, [np.arange(30), np.arange(5)], 1000) == 80
    assert search_depth(50, [np.arange(10**5)], 10**6) == 50 + 2000
    assert search_depth(50, None, 20) == 20


def test_calibrating_on_the_shown_lists_keeps_recall_where_shoppers_own_items_fill_the_top() -> None:
    """Each shopper's query is closest to the items they already have (as a trained model's are), so
    the unfiltered top 50 is mostly their own items and says little of the list they are shown."""
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(200, 24)).astype(np.float32)
    items = np.repeat(centers, 40, axis=0) + 0.15 * rng.normal(size=(8000, 24)).astype(np.float32)
    # Each shopper has every item of one cluster; the query points at that cluster.
    home = rng.integers(0, 200, size=700)
    seen = [np.arange(40 * h, 40 * h + 40) for h in home.tolist()]
    queries = unit_rows(centers[home] + 0.05 * rng.normal(size=(700, 24)).astype(np.float32))
    cal, held = slice(0, 500), slice(500, 700)
    plain, plain_report = build_index(
        items,
        exact_max_items=0,
        params=AnnParams(kind="ivf", target_recall=0.95),
        calibration_queries=queries[cal],
    )
    shown, report = build_index(
        items,
        exact_max_items=0,
        params=AnnParams(kind="ivf", target_recall=0.95),
        calibration_queries=queries[cal],
        calibration_seen=seen[cal],
    )
    assert (report.search_effort or 0) > (plain_report.search_effort or 0)

    def shown_recall(index: faiss.Index, effort: int) -> float:
        set_search_effort(index, effort)
        depth = search_depth(50, seen[held], len(items))
        full = exact_search(items, queries[held], depth)
        truth = ExactTopK(*served_lists(full.scores, full.ids, seen[held], 50))
        scores, ids = index.search(queries[held], depth)
        found = served_lists(scores, ids, seen[held], 50)
        return float(per_query_recall(*found, truth).mean())

    # Calibrated on the unfiltered top 50 (the shopper's own cluster, in one cell), the effort is far
    # too small for the list shown; calibrated on that list, it holds on other shoppers.
    assert shown_recall(plain, plain_report.search_effort or 0) < 0.85
    assert shown_recall(shown, report.search_effort or 0) >= 0.93
    assert report.recall_at_k is not None and report.recall_at_k >= 0.95
