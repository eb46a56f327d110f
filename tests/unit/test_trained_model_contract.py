"""The contract of the one read side of a trained model (``model.trained_model.TrainedModel``), which
serving, the retrain gate and the quality benchmark all rank through."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

import model.trained_model as trained_model
from model.interactions import Interactions, build_interactions
from model.lae import TrainConfig, train_lae
from model.pipeline import train_artifact
from model.trained_model import TrainedModel

N_USERS, N_ITEMS, PER_USER = 60, 40, 8
# A recency boost that matters, so a history folded in the wrong order gives another vector.
CONFIG = TrainConfig(factors=12, reg=5.0, recency_boost=3.0, recency_half_life=2.0, device="cpu")


def _events() -> list[tuple[str, str, str, None, int]]:
    """Users shop mostly in one of four item clusters; every (user, item) pair once, distinct times."""
    rng = np.random.default_rng(7)
    events = []
    for u in range(N_USERS):
        own = np.arange(u % 4, N_ITEMS, 4)
        items = rng.choice(own, size=PER_USER - 2, replace=False).tolist()
        items += rng.choice(np.setdiff1d(np.arange(N_ITEMS), items), size=2, replace=False).tolist()
        for j in rng.permutation(len(items)).tolist():
            events.append((f"u{u}", f"i{items[j]}", "view", None, 1_000 * u + j))
    return events


@pytest.fixture(scope="module")
def fitted() -> tuple[Interactions, TrainedModel]:
    inter = build_interactions(_events())
    return inter, TrainedModel(train_artifact(inter, CONFIG, version=1, exact_max_items=1000))


def _history(inter: Interactions, row: int) -> list[tuple[str, float]]:
    """The user's (item, weight) pairs oldest first, as training saw them."""
    start, end = inter.matrix.indptr[row], inter.matrix.indptr[row + 1]
    order = np.argsort(inter.last_ts.data[start:end], kind="stable")
    cols = inter.matrix.indices[start:end][order]
    weights = inter.matrix.data[start:end][order]
    return [(str(inter.item_ids[c]), float(w)) for c, w in zip(cols, weights, strict=True)]


def _queries(inter: Interactions, model: TrainedModel) -> list[np.ndarray | list[tuple[str, float]]]:
    user = model.user_vector("u3")
    assert user is not None
    return [user, _history(inter, 5), [("nope", 1.0), ("i2", 2.0)], [], [("nope", 1.0)]]


@pytest.mark.parametrize("k", [0, 1, 5, N_ITEMS, N_ITEMS + 7])
def test_recommend_respects_k_and_exclude_and_returns_only_known_items(
    fitted: tuple[Interactions, TrainedModel], k: int
) -> None:
    inter, model = fitted
    for query in _queries(inter, model):
        for exclude in (set(), {"i0", "i1", "i2", "nope"}, {f"i{j}" for j in range(N_ITEMS - 3)}):
            got = model.recommend(query, k, exclude)
            items = [i for i, _ in got]
            excluded_known = len(exclude & set(model.item_ids))
            assert len(items) == min(k, N_ITEMS - excluded_known)
            assert len(set(items)) == len(items) and not set(items) & exclude
            assert all(model.knows_item(i) for i in items)
            scores = [s for _, s in got]
            assert scores == sorted(scores, reverse=True)


def test_recommend_batch_equals_recommend_row_by_row(
    fitted: tuple[Interactions, TrainedModel], monkeypatch: pytest.MonkeyPatch
) -> None:
    inter, model = fitted
    # Not the histories of nothing known: they rank by the bias alone, where ties (pop_weight 0 makes
    # every score 0) let the order depend on how deep FAISS is asked to search.
    queries = _queries(inter, model)[:3] + [_history(inter, r) for r in range(10)]
    exclude = [{i for i, _ in q} if isinstance(q, list) else {"i3"} for q in queries]
    monkeypatch.setattr(trained_model, "BATCH", 4)  # several FAISS calls, each with its own fetch depth
    batch = model.recommend_batch(queries, 6, exclude)
    assert len(batch) == len(queries)
    for query, excl, row in zip(queries, exclude, batch, strict=True):
        single = model.recommend(query, 6, excl)
        assert [i for i, _ in row] == [i for i, _ in single]
        assert np.allclose([s for _, s in row], [s for _, s in single])
    assert model.recommend_batch(queries, 0) == [[] for _ in queries]
    with pytest.raises(ValueError, match="exclusion"):
        model.recommend_batch(queries, 3, exclude[:2])


def test_similar_never_returns_the_anchor(fitted: tuple[Interactions, TrainedModel]) -> None:
    _, model = fitted
    for item in model.item_ids:
        found = [i for i, _ in model.similar(item, 5)]
        assert len(found) == 5 and item not in found and all(model.knows_item(i) for i in found)
    assert model.similar("nope", 5) == []


def test_fold_in_of_a_users_events_matches_the_trained_user(
    fitted: tuple[Interactions, TrainedModel],
) -> None:
    inter, model = fitted
    overlaps = []
    for row, user in enumerate(inter.user_ids.tolist()):
        trained = model.user_vector(user)
        folded = model.fold_in(_history(inter, row))
        assert trained is not None and folded is not None and folded[-1] == 1.0
        assert np.allclose(folded, trained, atol=1e-4, rtol=1e-4)
        seen = {i for i, _ in _history(inter, row)}
        top_trained = {i for i, _ in model.recommend(trained, 10, seen)}
        top_folded = {i for i, _ in model.recommend(folded, 10, seen)}
        overlaps.append(len(top_trained & top_folded) / 10)
    # Same tolerance spirit as test_model_foldin: the rankings agree, up to float ties.
    assert float(np.mean(overlaps)) >= 0.95
    # The order matters: the same events folded in newest first give another vector.
    reversed_vec = model.fold_in(_history(inter, 0)[::-1])
    assert reversed_vec is not None and not np.allclose(
        reversed_vec, model.user_vector(str(inter.user_ids[0]))
    )
    assert model.fold_in([("nope", 1.0)]) is None


def test_round_trip_through_the_artifact_answers_the_same(fitted: tuple[Interactions, TrainedModel]) -> None:
    inter, model = fitted
    files = model.to_files(5, metrics={"m": 1.0}, data_window={"events": 1}, trained_at=datetime.now(UTC))
    loaded = TrainedModel.from_files(files)
    assert loaded.version == 5 and loaded.item_ids == model.item_ids and loaded.config == model.config
    assert loaded.artifact.metrics["m"] == 1.0 and loaded.index_kind == model.index_kind
    queries = _queries(inter, model)
    assert loaded.recommend_batch(queries, 7) == model.recommend_batch(queries, 7)
    assert loaded.similar("i4", 6) == model.similar("i4", 6)
    assert loaded.popular_items(5) == model.popular_items(5)
    history = _history(inter, 9)
    assert np.array_equal(loaded.fold_in(history), model.fold_in(history))  # type: ignore[arg-type]


def test_dense_scores_of_a_freshly_trained_model_agree_with_recommend(
    fitted: tuple[Interactions, TrainedModel],
) -> None:
    """The quality benchmark scores the full catalogue; serving searches the index: same ranking."""
    inter, _ = fitted
    ranks = inter.recency_ranks()
    weights = train_lae(inter.matrix, CONFIG, recency_ranks=ranks)
    fresh = TrainedModel.from_weights(weights, CONFIG, inter.item_ids)
    rows = np.arange(12)
    dense = fresh.scores(inter.matrix[rows], ranks[rows])
    assert dense.shape == (len(rows), N_ITEMS)
    for row in rows.tolist():
        history = _history(inter, row)
        seen = {i for i, _ in history}
        got = fresh.recommend(history, 5, seen)
        cols = [fresh.item_ids.index(i) for i, _ in got]
        assert np.allclose([s for _, s in got], dense[row, cols], atol=1e-4)
        unseen = [c for c, i in enumerate(fresh.item_ids) if i not in seen]
        fifth_best = np.sort(dense[row, unseen])[::-1][4]
        assert got[-1][1] >= fifth_best - 1e-4
