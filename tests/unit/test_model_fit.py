"""``model.pipeline.fit_model``: the one training path of retrain and the quality benchmark, and its read
side (exact dense scores, ranking through the index, ``exclude_seen``)."""

from __future__ import annotations

import numpy as np
import pytest

from core.event_table import EventTable
from core.settings import ModelSettings
from model.pipeline import FittedModel, fit_model
from retrain.gate import user_histories
from retrain.model_adapter import ModelTrainer


def _table(n_users: int = 120, n_items: int = 60, per_user: int = 14, seed: int = 5) -> EventTable:
    rng = np.random.default_rng(seed)
    n = n_users * per_user
    users = np.repeat([f"u{u}" for u in range(n_users)], per_user)
    cluster = np.repeat(np.arange(n_users) % 3, per_user)
    items = np.array([f"i{3 * int(rng.integers(0, n_items // 3)) + c}" for c in cluster])
    kinds = rng.choice(["view", "click", "purchase"], size=n, p=[0.7, 0.2, 0.1])
    return EventTable(
        user_id=users,
        item_id=items,
        event_type=kinds.astype(str),
        value=np.full(n, np.nan),
        ts_ms=rng.permutation(n).astype(np.int64) * 1000,  # distinct: the order is unambiguous
    )


def _settings(**changes: str) -> ModelSettings:
    return ModelSettings.model_validate({"factors": 16, "reg": 20.0, **changes})


def test_retrain_trains_through_fit_model() -> None:
    table = _table()
    settings = _settings(input_weighting="log")
    via_retrain = ModelTrainer(settings).fit(table)
    direct = fit_model(table, settings).model
    assert np.array_equal(via_retrain.artifact.item_embeddings, direct.artifact.item_embeddings)
    assert via_retrain.config["input_weighting"] == "log"
    assert via_retrain.config["history_order"] == "latest"


@pytest.mark.parametrize(
    ("weighting", "order"), [("binary", "first"), ("log", "latest"), ("linear", "first")]
)
def test_fold_in_of_the_event_history_is_the_trained_user_vector(weighting: str, order: str) -> None:
    """With a per-item setting, the gate's and serving's fold-in of a user's raw events rebuilds exactly
    the vector training stored for them: one meaning in training and at serving."""
    table = _table()
    settings = _settings(input_weighting=weighting, history_order=order)
    fitted = fit_model(table, settings)
    users = ["u0", "u1", "u7"]
    for user, history in zip(users, user_histories(table, users, settings.weights), strict=True):
        stored = fitted.model.user_vector(user)
        folded = fitted.model.fold_in(history)
        assert stored is not None and folded is not None
        np.testing.assert_allclose(folded, stored, rtol=1e-4, atol=1e-4)


def test_linear_latest_fold_in_stays_per_event() -> None:
    fitted = fit_model(_table(), _settings(input_weighting="linear", history_order="latest"))
    once = fitted.model.fold_in([("i0", 1.0)])
    twice = fitted.model.fold_in([("i0", 1.0), ("i0", 1.0)])
    assert once is not None and twice is not None
    assert not np.allclose(once, twice)  # each repeat counts, with its own recency boost


@pytest.fixture(scope="module")
def fitted() -> FittedModel:
    return fit_model(_table(), _settings(input_weighting="binary", history_order="first"))


def test_exact_scores_and_index_rank_alike_and_exclude_seen(fitted: FittedModel) -> None:
    rows = fitted.rows(["u0", "u5", "u11"])
    scores = fitted.scores(rows)
    assert scores.shape == (3, fitted.interactions.n_items)
    ranked = fitted.recommend(rows, 10)
    item_ids = fitted.interactions.item_ids
    for r, row, recs in zip(rows.tolist(), scores, ranked, strict=True):
        seen = fitted.seen(r)
        assert seen and not seen & {i for i, _ in recs}
        dense = [str(item_ids[j]) for j in np.argsort(-row, kind="stable") if str(item_ids[j]) not in seen][
            :10
        ]
        assert [i for i, _ in recs] == dense
    with_seen = fitted.recommend(rows[:1], 60, exclude_seen=False)[0]
    assert fitted.seen(int(rows[0])) <= {i for i, _ in with_seen}


def test_reindexed_forces_the_approximate_index(fitted: FittedModel) -> None:
    settings = _settings()
    assert fitted.model.index_kind == "exact"
    ann = fitted.reindexed(settings, exact_max_items=0)
    assert ann.model.index_kind == "hnsw"
    rows = fitted.rows([f"u{i}" for i in range(40)])
    exact = fitted.recommend(rows, 10)
    approx = ann.recommend(rows, 10)
    overlap = np.mean(
        [len({i for i, _ in a} & {i for i, _ in b}) / 10 for a, b in zip(exact, approx, strict=True)]
    )
    assert overlap >= 0.9
    assert fitted.reindexed(settings).model.index_kind == "exact"  # retrain's choice for 60 items


def test_unknown_user_rows_raise(fitted: FittedModel) -> None:
    with pytest.raises(KeyError, match="not training users"):
        fitted.rows(["nobody"])
