"""HybridModel: a trained model plus cold items embedded from their catalog content."""

from __future__ import annotations

import numpy as np
import pytest

from model.hybrid import HybridModel, SideItems, merge
from model.trained_model import TrainedModel
from tests.unit.cold_start_fixtures import clustered_model
from tests.unit.cold_start_fixtures import item_doc as _doc


@pytest.fixture(scope="module")
def base() -> TrainedModel:
    return clustered_model()


def _hybrid(base: TrainedModel, docs: list[dict]) -> HybridModel:
    vecs = base.content_vectors(docs)
    assert vecs is not None
    side = SideItems.empty(base.dim).upsert([d["item_id"] for d in docs], *vecs, max_items=100)
    return HybridModel(base, side)


def test_cold_item_is_known_similar_and_recommended(base: TrainedModel) -> None:
    model = _hybrid(base, [_doc("new1", 1), _doc("new2", 2)])
    assert model.knows_item("new1") and model.is_cold("new1") and not model.is_cold("i1")
    assert model.n_items == base.n_items + 2
    # As the query item: its neighbours are its cluster's items.
    near = [i for i, _ in model.similar("new1", 10)]
    assert "new1" not in near and sum(i.startswith("i") and int(i[1:]) % 3 == 1 for i in near) >= 8
    # As a candidate: a cluster-1 item's similar list and a cluster-1 shopper's list reach it; a
    # cluster-2 shopper's does not.
    assert "new1" in [i for i, _ in model.similar("i1", 25)]
    u1, u2 = model.user_vector("u1"), model.user_vector("u2")
    assert u1 is not None and u2 is not None
    ranked1 = [i for i, _ in model.recommend(u1, 62)]
    ranked2 = [i for i, _ in model.recommend(u2, 62)]
    # Among the 21 items of its cluster for a cluster-1 shopper, behind the cluster-2 item for others.
    assert ranked1.index("new1") < 21 and ranked1.index("new1") < ranked1.index("new2")
    assert ranked2.index("new2") < 21 and ranked2.index("new2") < ranked2.index("new1")
    assert "new1" not in [i for i, _ in model.recommend(u1, 62, exclude={"new1"})]


def test_sessions_fold_in_cold_items(base: TrainedModel) -> None:
    model = _hybrid(base, [_doc("new1", 1)])
    assert base.fold_in([("new1", 1.0)]) is None
    session = model.fold_in([("new1", 1.0)])
    assert session is not None
    assert sum(int(i[1:]) % 3 == 1 for i, _ in model.recommend(session, 10) if i.startswith("i")) >= 8
    rows = model.item_vectors(["i1", "new1"])
    assert rows.shape == (2, base.dim)
    assert np.array_equal(rows[0], base.item_vectors(["i1"])[0])


def test_side_items_upsert_caps_and_drops() -> None:
    side = SideItems.empty(3)
    one = np.ones((1, 3), np.float32)
    for n in range(4):
        side = side.upsert([f"n{n}"], one * n, one[:, :2] * n, max_items=3)
    # Over the cap of 3 the oldest go, down to 3 - max(1, 3 // 10) = 2.
    assert side.ids == ("n2", "n3")
    side = side.upsert(["n4"], one * 4, one[:, :2] * 4, max_items=3)
    side = side.upsert(["n2"], one * 9, one[:, :2] * 9, max_items=3)
    assert side.ids == ("n3", "n4", "n2") and side.item_vecs[side.pos["n2"]][0] == 9
    assert side.inputs["n2"][0] == 9 and side.inputs["n3"][0] == 3
    assert side.without({"n3"}).ids == ("n4", "n2") and side.without({"zz"}) is side
    assert [i for i, _ in side.top(np.ones(3), 2)] == ["n2", "n4"]
    assert [i for i, _ in side.top(np.ones(3), 2, exclude={"n2"})] == ["n4", "n3"]
    with pytest.raises(ValueError):
        SideItems.build(["a"], np.zeros((2, 3)), np.zeros((2, 2)))


def test_appends_share_rows_without_changing_earlier_sets() -> None:
    one = np.ones((1, 3), np.float32)
    first = SideItems.build(["a"], one, one[:, :2], capacity=10)
    second = first.upsert(["b"], one * 2, one[:, :2] * 2, max_items=100)
    assert second.item_vecs.base is first.item_vecs.base  # appended in place
    # An earlier set that is no longer the newest copies instead of writing over ``b``.
    other = first.upsert(["c"], one * 3, one[:, :2] * 3, max_items=100)
    assert other.ids == ("a", "c") and second.ids == ("a", "b")
    assert second.item_vecs[1][0] == 2 and other.item_vecs[1][0] == 3 and len(first) == 1
    assert first.tag != second.tag != other.tag
    # A repeated id in one batch: its last rows win.
    dup = first.upsert(["d", "d"], np.vstack([one, one * 5]), np.vstack([one[:, :2], one[:, :2] * 5]), 100)
    assert dup.ids == ("a", "d") and dup.item_vecs[1][0] == 5


def test_merge_keeps_the_best_by_score() -> None:
    assert merge([("a", 3.0), ("b", 1.0)], [("c", 2.0)], 2) == [("a", 3.0), ("c", 2.0)]
    assert merge([("a", 3.0)], [], 5) == [("a", 3.0)]


def test_delegates_the_rest_to_the_base(base: TrainedModel) -> None:
    model = HybridModel(base, SideItems.empty(base.dim))
    assert model.version == base.version and model.popular_items(3) == base.popular_items(3)
    assert model.similar("unknown", 5) == []
