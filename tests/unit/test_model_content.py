"""The content model: featurizer, vocabulary round trip, the ridge map and its tuning."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from model.content import (
    BIAS,
    ContentFeaturizer,
    ContentModel,
    fit_content_map,
    fit_content_model,
    item_tokens,
    tune_content_reg,
)
from model.errors import EmptyDataError


def _catalog(n: int = 200, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Items whose target embedding is a function of category and brand (plus noise)."""
    rng = np.random.default_rng(seed)
    cats = ["shoes", "books > crime", "books > poetry", "garden"]
    brands = ["acme", "zenith", "orbit"]
    cat_vec = rng.normal(size=(len(cats), 6))
    brand_vec = rng.normal(size=(len(brands), 6)) * 0.5
    items, targets = [], []
    for i in range(n):
        c, b = rng.integers(len(cats)), rng.integers(len(brands))
        items.append(
            {
                "item_id": f"i{i}",
                "title": f"{cats[c].split()[0]} model {i} deluxe",
                "category": cats[c],
                "price": float(rng.uniform(1, 500)),
                "properties": {"brand": brands[b], "eco": bool(i % 2), "weight_g": int(rng.integers(1, 900))},
            }
        )
        targets.append(cat_vec[c] + brand_vec[b] + rng.normal(scale=0.05, size=6))
    return items, np.asarray(targets, np.float32)


def test_tokens_cover_every_field() -> None:
    toks = dict(
        (name, group)
        for group, name in item_tokens(
            {
                "title": "Red Running Shoe 2",
                "category": "Sport > Running",
                "price": 59.0,
                "properties": {"brand": "Acme", "eco": True, "size": 42, "colour": "red", "gone": None},
            }
        )
    )
    assert toks["cat=sport > running"] == "cat"
    assert {"catpart=sport", "catpart=running"} <= toks.keys()
    assert {"word=red", "word=running", "word=shoe"} <= toks.keys() and "word=2" not in toks
    assert toks["brand=acme"] == "brand"
    assert {"prop:eco=true", "prop:colour=red"} <= toks.keys()
    assert any(t.startswith("prop:size~") for t in toks) and not any("gone" in t for t in toks)
    assert any(t.startswith("price~") for t in toks)


def test_price_bands_are_log_spaced() -> None:
    def band(p: float) -> str:
        return next(n for g, n in item_tokens({"price": p}) if g == "price")

    assert band(10.0) == band(11.0) != band(100.0)
    assert band(1000.0) == band(1100.0)
    assert band(0.0) == band(0.5)


def test_genre_lists_share_parts() -> None:
    a = {n for _, n in item_tokens({"category": "Action|Comedy"})}
    b = {n for _, n in item_tokens({"category": "Comedy|Drama"})}
    assert "catpart=comedy" in a & b


def test_transform_rows_are_unit_and_unknowns_ignored() -> None:
    items, _ = _catalog(50)
    feat = ContentFeaturizer().fit(items)
    x = feat.transform([*items[:3], {"title": "never seen words"}, {}])
    assert isinstance(x, sp.csr_matrix) and x.shape == (5, feat.n_features)
    np.testing.assert_allclose(np.sqrt(x.multiply(x).sum(axis=1)).A1, 1.0, rtol=1e-5)
    # An item with nothing known has only the bias feature.
    assert x[3].indices.tolist() == [feat.vocabulary[BIAS]] == x[4].indices.tolist()


def test_min_count_and_word_cap() -> None:
    items = [{"title": f"common rare{i}", "category": "x"} for i in range(10)]
    feat = ContentFeaturizer(max_words=5, min_count=2).fit(items)
    assert "word=common" in feat.vocabulary and not any("rare" in n for n in feat.vocabulary)
    capped = ContentFeaturizer(max_words=1, min_count=1).fit(items)
    assert sum(n.startswith("word=") for n in capped.vocabulary) == 1


def test_vocabulary_round_trips_through_json() -> None:
    items, _ = _catalog(80)
    feat = ContentFeaturizer(max_words=100).fit(items)
    back = ContentFeaturizer.from_json(feat.to_json())
    assert back.vocabulary == feat.vocabulary and back.max_words == 100
    assert (back.transform(items) != feat.transform(items)).nnz == 0
    with pytest.raises(ValueError):
        ContentFeaturizer.from_json('{"format": 99}')


def test_unfitted_featurizer_refuses() -> None:
    with pytest.raises(EmptyDataError):
        ContentFeaturizer().transform([{}])


@pytest.mark.parametrize("n", [30, 400])  # fewer items than features (dual solve) and more (primal)
def test_ridge_map_matches_the_normal_equations(n: int) -> None:
    rng = np.random.default_rng(n)
    x = sp.random(n, 60, density=0.2, random_state=n, format="csr")
    y = rng.normal(size=(n, 4))
    w = fit_content_map(x, y, reg=0.5)
    dense = x.toarray()
    expected = np.linalg.solve(dense.T @ dense + 0.5 * np.eye(60), dense.T @ y)
    np.testing.assert_allclose(w, expected, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError):
        fit_content_map(x, y, reg=0.0)


def test_content_model_predicts_held_out_items() -> None:
    items, targets = _catalog(400)
    model = fit_content_model(items[:300], targets[:300])
    assert model.reg > 0 and model.validation_r2 is not None and model.validation_r2 > 0.8
    pred = model.embed(items[300:])
    assert pred.shape == (100, 6) and pred.dtype == np.float32
    # Each cold item's nearest warm target (by its predicted vector) is in its category most of the time.
    cos = (pred / np.linalg.norm(pred, axis=1, keepdims=True)) @ (
        targets[:300] / np.linalg.norm(targets[:300], axis=1, keepdims=True)
    ).T
    nearest = cos.argmax(axis=1)
    same = [items[300 + i]["category"] == items[j]["category"] for i, j in enumerate(nearest)]
    assert np.mean(same) > 0.8
    assert model.embed([]).shape == (0, 6)


def test_tuning_prefers_less_shrinkage_on_clean_signal() -> None:
    items, targets = _catalog(300)
    x = ContentFeaturizer().fit(items).transform(items)
    best, scores = tune_content_reg(x, targets, grid=(0.01, 1000.0))
    assert best == 0.01 and scores[0.01] > scores[1000.0]


def test_content_model_checks_weight_shape() -> None:
    feat = ContentFeaturizer().fit(_catalog(20)[0])
    with pytest.raises(ValueError):
        ContentModel(feat, np.zeros((feat.n_features + 1, 3), np.float32))


@pytest.mark.parametrize("n", [40, 300])  # dual (fewer items than features) and primal
def test_tuning_scores_match_direct_fits(n: int) -> None:
    from model.content import r2_score

    rng = np.random.default_rng(n)
    x = sp.random(n, 80, density=0.15, random_state=n, format="csr")
    y = rng.normal(size=(n, 5))
    _, scores = tune_content_reg(x, y, grid=(0.1, 1.0), seed=3)
    order = np.random.default_rng(3).permutation(n)
    n_val = round(n * 0.2)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    for reg, got in scores.items():
        direct = r2_score(x[val] @ fit_content_map(x[train], y[train], reg), y[val])
        assert got == pytest.approx(direct, abs=1e-4)
