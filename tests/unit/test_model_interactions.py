import numpy as np
import pytest

from core.settings import EventWeights
from model.errors import EmptyDataError
from model.interactions import DAY_MS, build_interactions


def test_weights_merging_and_rate_scaling() -> None:
    events = [
        ("u1", "a", "view", None, 0),
        ("u1", "a", "purchase", None, 10),
        ("u1", "b", "rate", 4.0, 20),
        ("u2", "b", "add_to_cart", None, 30),
        ("u2", "c", "unknown", None, 40),
    ]
    inter = build_interactions(events)
    assert inter.user_ids.tolist() == ["u1", "u2"]
    assert inter.item_ids.tolist() == ["a", "b"]
    dense = inter.matrix.toarray()
    assert np.allclose(dense, [[6.0, 4.0], [0.0, 3.0]])
    assert inter.last_ts[0, 0] == 10
    assert inter.user_ids.dtype.kind == "U"


def test_custom_weights_and_half_life_decay() -> None:
    now = 10 * DAY_MS
    events = [("u", "old", "click", None, now - 2 * DAY_MS), ("u", "new", "click", None, now)]
    inter = build_interactions(events, weights=EventWeights(click=2.0), half_life_days=2.0, now_ms=now)
    dense = dict(zip(inter.item_ids.tolist(), inter.matrix.toarray()[0], strict=True))
    assert np.isclose(dense["new"], 2.0)
    assert np.isclose(dense["old"], 1.0)


def test_recency_ranks_order() -> None:
    events = [("u", "a", "view", None, 5), ("u", "b", "view", None, 9), ("u", "c", "view", None, 1)]
    ranks = build_interactions(events).recency_ranks().toarray()[0]
    assert ranks.tolist() == [1.0, 0.0, 2.0]


def test_no_positive_events_raises() -> None:
    with pytest.raises(EmptyDataError):
        build_interactions([("u", "a", "rate", 0.0, 1)])


def test_arrays_give_the_same_matrix_as_rows() -> None:
    from core.event_weights import event_weights
    from model.interactions import interactions_from_arrays

    rng = np.random.default_rng(5)
    kinds = np.array(["view", "click", "purchase", "rate", "unknown"])
    n = 500
    users = np.array([f"u{k}" for k in rng.integers(0, 30, n)])
    items = np.array([f"i{k}" for k in rng.integers(0, 40, n)])
    types = kinds[rng.integers(0, len(kinds), n)]
    values = np.where(types == "rate", rng.integers(0, 6, n).astype(float), np.nan)
    ts = rng.integers(0, 30 * DAY_MS, n)
    rows = [
        (u, i, t, None if np.isnan(v) else float(v), int(s))
        for u, i, t, v, s in zip(users, items, types, values, ts, strict=True)
    ]
    want = build_interactions(rows, half_life_days=7.0)
    got = interactions_from_arrays(
        users, items, event_weights(types, values, EventWeights()), ts, half_life_days=7.0
    )
    assert got.user_ids.tolist() == want.user_ids.tolist()
    assert got.item_ids.tolist() == want.item_ids.tolist()
    assert (got.matrix != want.matrix).nnz == 0
    assert (got.last_ts != want.last_ts).nnz == 0
