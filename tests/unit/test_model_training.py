import numpy as np
import pytest
import scipy.sparse as sp

from model.errors import DegenerateModelError, EmptyDataError
from model.interactions import build_interactions
from model.lae import TrainConfig, train_lae
from model.pipeline import train_artifact


def _synthetic(seed: int = 0, n_users: int = 300, n_items: int = 120) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, 4))
    v = rng.normal(size=(n_items, 4))
    top = np.argsort(-(u @ v.T), axis=1)[:, :8]
    rows = np.repeat(np.arange(n_users), 8)
    return sp.csr_matrix((np.ones(rows.size, np.float32), (rows, top.ravel())), shape=(n_users, n_items))


@pytest.mark.parametrize("epochs", [0, 2])
def test_training_is_deterministic_with_a_seed(epochs: int) -> None:
    x = _synthetic()
    cfg = TrainConfig(factors=16, reg=10.0, epochs=epochs, seed=3, device="cpu")
    a, b = train_lae(x, cfg), train_lae(x, cfg)
    assert np.array_equal(a.input_emb, b.input_emb)
    assert np.array_equal(a.output_emb, b.output_emb)
    assert np.array_equal(a.bias, b.bias)


def test_large_matrix_path_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("model.lae.DENSE_SVD_MAX", 10)  # force the randomised SVD
    x = _synthetic()
    cfg = TrainConfig(factors=8, reg=10.0, seed=5, device="cpu")
    assert np.array_equal(train_lae(x, cfg).input_emb, train_lae(x, cfg).input_emb)


def test_model_learns_structure() -> None:
    x = _synthetic()
    w = train_lae(x, TrainConfig(factors=16, reg=1.0, device="cpu"))
    scores = w.scores(x)
    # the user's own items should outrank the average item
    own = np.asarray(x.multiply(scores).sum(axis=1)).ravel() / 8
    assert (own > scores.mean(axis=1)).mean() > 0.95


def test_nan_input_raises() -> None:
    x = _synthetic()
    x.data[0] = np.nan
    with pytest.raises(DegenerateModelError, match="NaN"):
        train_lae(x, TrainConfig(factors=8, device="cpu"))


def test_collapsed_fit_raises_and_is_not_packaged() -> None:
    events = [(f"u{k % 20}", f"i{k % 13}", "view", None, k) for k in range(200)]
    inter = build_interactions(events)
    with pytest.raises(DegenerateModelError, match="all zero"):
        train_artifact(inter, TrainConfig(factors=8, reg=1e30, device="cpu"), version=1)


def test_empty_matrix_raises() -> None:
    with pytest.raises(EmptyDataError):
        train_lae(sp.csr_matrix((3, 3), dtype=np.float32), TrainConfig(factors=2))


def test_full_rank_diag_correction_equals_ease_on_unseen_items() -> None:
    from tooling.offline.baselines import EASE

    x = _synthetic(n_users=40, n_items=90)
    ease = EASE(lam=20.0)
    ease.fit(x)
    w = train_lae(x, TrainConfig(factors=64, reg=20.0, recency_boost=0.0, device="cpu"))
    rows = np.arange(40)
    unseen = x.toarray() == 0
    assert np.allclose(w.scores(x)[unseen], ease.score(rows)[unseen], atol=1e-4)
