"""The content map refined on the shoppers' ranking (model.content_ranking), without servers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from model.content_ranking import (
    MIN_SCORE_SCALE,
    RankingFit,
    choose_content_fit,
    holdout_ndcg,
    refine_content_map,
    score_scale,
)
from model.pipeline import fit_embeddings, fit_item_content
from tests.unit.cold_start_fixtures import item_doc

GROUPS = 3


def _problem(n_items: int = 30, n_users: int = 30) -> tuple[sp.csr_matrix, np.ndarray, sp.csr_matrix]:
    """Items carry their group's one-hot feature; a user of group g has vector e_g and buys group g."""
    item_group = np.arange(n_items) % GROUPS
    features = sp.csr_matrix((np.ones(n_items), (np.arange(n_items), item_group)), shape=(n_items, GROUPS))
    user_group = np.arange(n_users) % GROUPS
    users = np.eye(GROUPS, dtype=np.float32)[user_group]
    rows, cols = [], []
    for u, g in enumerate(user_group):
        for i in np.flatnonzero(item_group == g):
            rows.append(u)
            cols.append(i)
    pairs = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    return features, users, pairs


def _cold_top_group(weights: np.ndarray, users: np.ndarray) -> np.ndarray:
    cold = np.eye(GROUPS, dtype=np.float32) @ weights  # one new item per group, from its feature only
    return np.argmax(users @ cold.T, axis=1)


@pytest.mark.parametrize("negatives", [8192, 4])  # the full softmax, and a sampled one
def test_refinement_learns_which_features_a_shopper_ranks_first(negatives: int) -> None:
    features, users, pairs = _problem()
    # A map that ranks every shopper's group last: the ridge map of a poor fit, say.
    init = -np.eye(GROUPS, dtype=np.float32)
    assert (_cold_top_group(init, users) != np.arange(len(users)) % GROUPS).all()
    fit = RankingFit(epochs=60, lr=0.05, batch_size=64, negatives=negatives, seed=3)
    refined = refine_content_map(features, init, users, pairs, fit)
    assert refined.shape == init.shape and refined.dtype == np.float32
    assert (_cold_top_group(refined, users) == np.arange(len(users)) % GROUPS).all()


def test_no_step_returns_the_starting_map_and_a_seed_repeats() -> None:
    features, users, pairs = _problem()
    init = np.random.default_rng(0).normal(size=(GROUPS, GROUPS)).astype(np.float32)
    np.testing.assert_array_equal(
        refine_content_map(features, init, users, pairs, RankingFit(max_steps=0)), init
    )
    fit = RankingFit(epochs=2, batch_size=16, seed=5)
    first = refine_content_map(features, init, users, pairs, fit)
    np.testing.assert_array_equal(first, refine_content_map(features, init, users, pairs, fit))
    assert not np.array_equal(first, init)


def test_shapes_that_do_not_fit_are_refused() -> None:
    features, users, pairs = _problem()
    with pytest.raises(ValueError, match="rows"):
        refine_content_map(features, np.zeros((GROUPS + 1, GROUPS), np.float32), users, pairs)
    with pytest.raises(ValueError, match="do not fit"):
        refine_content_map(features, np.zeros((GROUPS, GROUPS), np.float32), users[:, :2], pairs)


def _trained(n_users: int) -> tuple[Any, Any, Any, dict[str, dict[str, Any]]]:
    """(interactions, config, fitted, catalog): shoppers of three colours, 45 items, 10 views each."""
    from model.interactions import build_interactions
    from model.lae import TrainConfig

    rng = np.random.default_rng(1)
    events = []
    for u in range(n_users):
        own = np.arange(u % 3, 45, 3)
        events += [(f"u{u}", f"i{int(rng.choice(own))}", "view", None, k) for k in range(10)]
    inter = build_interactions(events)
    config = TrainConfig(factors=8, reg=5.0, device="cpu")
    catalog = {f"i{i}": item_doc(f"i{i}", i % 3) for i in range(45)}
    return inter, config, fit_embeddings(inter, config), catalog


def test_retrain_refines_the_item_part_and_keeps_the_input_part_as_ridge() -> None:
    inter, _, fitted, catalog = _trained(60)
    ridge = fit_item_content(inter, fitted, catalog)
    ranked = fit_item_content(inter, fitted, catalog, fit="ranking", rank_steps=20)
    assert ridge is not None and ranked is not None
    width = fitted.item_emb.shape[1]
    np.testing.assert_array_equal(ranked.weights[:, width:], ridge.weights[:, width:])
    assert not np.allclose(ranked.weights[:, :width], ridge.weights[:, :width])
    assert ranked.weights.dtype == np.float32


def _reference_ndcg(users: np.ndarray, pairs: sp.csr_matrix, items: np.ndarray, k: int) -> float:
    dense = pairs.toarray() > 0
    values = []
    for u in np.flatnonzero(dense.any(axis=1)):
        order = np.argsort(-(users[u] @ items.T), kind="stable")[:k]
        dcg = sum(1.0 / np.log2(p + 2) for p, i in enumerate(order) if dense[u, i])
        ideal = sum(1.0 / np.log2(p + 2) for p in range(min(k, int(dense[u].sum()))))
        values.append(dcg / ideal)
    return float(np.mean(values))


@pytest.mark.parametrize("seed", range(5))
def test_holdout_ndcg_matches_a_plain_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(40, 4)).astype(np.float32)
    items = rng.normal(size=(25, 4)).astype(np.float32)
    pairs = sp.random(40, 25, density=0.1, random_state=seed, format="csr")
    score, n_users = holdout_ndcg(users, pairs, items, k=5, chunk=7)
    assert n_users == int((pairs.getnnz(axis=1) > 0).sum())
    assert score == pytest.approx(_reference_ndcg(users, pairs, items, 5))


def test_auto_keeps_the_ridge_map_unless_the_ranking_one_ranks_held_out_items_better() -> None:
    features, users, pairs = _problem(n_items=60, n_users=60)
    fit = RankingFit(epochs=60, lr=0.05, batch_size=64, seed=3)
    group = np.arange(60) % GROUPS
    # Targets the ridge map reproduces exactly and that rank every shopper's own group first: a tie.
    good = np.eye(GROUPS, dtype=np.float32)[group]
    choice, scores = choose_content_fit(features, good, 1e-3, users, pairs, fit, min_users=5)
    assert choice == "ridge" and scores["ridge"] == pytest.approx(1.0)
    # Targets that rank it last: only the refinement on the ranking recovers the held-out items.
    choice, scores = choose_content_fit(features, -good, 1e-3, users, pairs, fit, min_users=5)
    assert choice == "ranking" and scores["ranking"] > scores["ridge"]
    # Too few shoppers with a held-out item to tell: the ridge map, untested.
    assert choose_content_fit(features, -good, 1e-3, users, pairs, fit, min_users=1000) == ("ridge", {})


def test_retrain_records_the_fit_it_chose() -> None:
    from model.pipeline import package_artifact

    inter, config, fitted, catalog = _trained(90)
    model = fit_item_content(inter, fitted, catalog, fit="auto", rank_steps=20)
    assert model is not None and model.fit in ("ridge", "ranking")
    assert set(model.fit_scores) == {"ridge", "ranking", "users", "scale_ridge", "scale_ranking"}
    artifact = package_artifact(inter, fitted, config, version=1, content=model)
    assert artifact.config["content"]["fit"] == model.fit
    assert artifact.config["content"]["fit_scores"] == model.fit_scores


def test_score_scale_puts_content_scores_on_the_trained_scale_and_never_raises_them() -> None:
    rng = np.random.default_rng(5)
    users, trained = rng.normal(size=(50, 6)), rng.normal(size=(30, 6))
    assert score_scale(users, 2.0 * trained, trained) == pytest.approx(0.5)
    assert score_scale(users, 0.5 * trained, trained) == 1.0  # a shrunk map is not stretched back
    # Anti-correlated: the floor, which keeps the new items' order among themselves (0 would tie them).
    assert score_scale(users, -trained, trained) == MIN_SCORE_SCALE > 0.0
    assert score_scale(users, np.zeros_like(trained), trained) == 1.0  # nothing to scale
    # Sampled: a few rows of many still give the same factor when it is exact.
    assert score_scale(users, 4.0 * trained, trained, sample=7) == pytest.approx(0.25)


def test_calibration_scales_the_serving_part_only_and_is_recorded() -> None:
    from model.pipeline import package_artifact

    inter, config, fitted, catalog = _trained(90)
    plain = fit_item_content(inter, fitted, catalog, fit="ranking", rank_steps=20)
    calibrated = fit_item_content(inter, fitted, catalog, fit="ranking", rank_steps=20, calibrate=True)
    assert plain is not None and calibrated is not None and plain.score_scale == 1.0
    scale = calibrated.score_scale
    assert MIN_SCORE_SCALE <= scale <= 1.0 and scale == calibrated.fit_scores["scale_ranking"]
    assert set(calibrated.fit_scores) == {"ranking", "scale_ranking", "users"}
    width = fitted.item_emb.shape[1]
    np.testing.assert_allclose(calibrated.weights[:, :width], scale * plain.weights[:, :width], rtol=1e-5)
    np.testing.assert_array_equal(calibrated.weights[:, width:], plain.weights[:, width:])
    artifact = package_artifact(inter, fitted, config, version=1, content=calibrated)
    assert artifact.config["content"]["score_scale"] == scale


def test_the_held_out_items_part_is_taken_out_of_the_shoppers_vectors() -> None:
    """Shoppers' vectors folded in from histories that hold the held-out items point at exactly those
    items (each item's input embedding is its own random direction, and its features say what it is):
    they find them far better than shoppers who never saw them, which would flatter the map closest to
    the trained embeddings. With their part taken out, the score drops to what the other items tell."""
    rng = np.random.default_rng(0)
    n_users, n_items, dim = 200, 300, 16
    emb = rng.normal(size=(n_items, dim)).astype(np.float32)
    rows = np.repeat(np.arange(n_users), 5)
    cols = rng.integers(0, n_items, size=len(rows))
    pairs = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items))
    pairs.data[:] = 1.0
    users = np.asarray(pairs @ emb, np.float32)
    features = sp.csr_matrix(emb)
    fit = RankingFit(max_steps=0, seed=3)  # both maps the ridge one: only the scores matter here
    _, leaky = choose_content_fit(features, emb, 1e-3, users, pairs, fit, min_users=5)
    _, fair = choose_content_fit(
        features, emb, 1e-3, users, pairs, fit, history=pairs, input_emb=emb, min_users=5
    )
    assert leaky["users"] == fair["users"] > 5
    assert leaky["ridge"] > 0.5 > 0.2 > fair["ridge"]
