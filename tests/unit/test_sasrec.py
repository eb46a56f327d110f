import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from tooling.offline.baselines import Popularity
from tooling.offline.evaluation import evaluate
from tooling.offline.sasrec import SASREC_SPACE, SASRec, suggest, time_ordered_histories, training_windows
from tooling.offline.split import Split, temporal_split

TINY = {"hidden": 32, "blocks": 1, "heads": 1, "dropout": 0.1, "max_len": 12, "lr": 5e-3, "batch_size": 32}


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(1)


def cyclic_split(n_users: int = 80, n_items: int = 30, length: int = 10, seed: int = 0) -> Split:
    """Every user walks the catalog in a fixed cycle (i -> i+1) from a random start: the next item is
    fully determined by the last one, while every item is about equally popular."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = int(rng.integers(n_items))
        for step in range(length):
            users.append(f"u{u}")
            items.append(f"i{(start + step) % n_items:02d}")
            ts.append(1000 * u + step)
    return temporal_split(np.array(users), np.array(items), np.array(ts))


def fitted(split: Split, **params: object) -> SASRec:
    model = SASRec(**{**TINY, "epochs": 15, **params})  # type: ignore[arg-type]
    model.set_order(split.recency_ranks())
    model.fit(split.train)
    return model


def test_histories_follow_the_recency_ranks() -> None:
    # user 0 touched columns 2, 0, 1 in that order (rank 0 = newest); user 1 has nothing
    ranks = sp.csr_matrix((np.array([1.0, 0.0, 2.0]), ([0, 0, 0], [0, 1, 2])), shape=(2, 3))
    hist = time_ordered_histories(ranks)
    assert hist[0].tolist() == [2, 0, 1]
    assert hist[1].tolist() == []


def test_windows_make_every_transition_a_target_once() -> None:
    hist = np.arange(7)  # tokens 1..7, six transitions
    inputs, targets = training_windows([hist, np.array([3])], max_len=3)
    pairs = sorted(
        (int(i), int(t))
        for row_i, row_t in zip(inputs, targets, strict=True)
        for i, t in zip(row_i, row_t, strict=True)
        if t > 0
    )
    assert pairs == [(k, k + 1) for k in range(1, 7)]
    assert inputs.shape[1] == 3
    assert ((inputs == 0) == (targets == 0)).all()  # padding lines up


def test_sasrec_learns_a_next_item_pattern_popularity_cannot() -> None:
    split = cyclic_split()
    pop = Popularity()
    pop.fit(split.train)
    pop_ndcg = evaluate(pop.score, split.train, split.test)[0]["ndcg@10"]
    model = fitted(split)
    sas_ndcg = evaluate(model.score, split.train, split.test)[0]["ndcg@10"]
    assert sas_ndcg > 0.8
    assert sas_ndcg > pop_ndcg + 0.4


def test_scores_have_one_row_per_user_and_one_column_per_item() -> None:
    split = cyclic_split(n_users=20)
    model = fitted(split, epochs=1)
    rows = np.array([3, 0, 7])
    scores = model.score(rows)
    assert scores.shape == (3, split.n_items)
    assert scores.dtype == np.float32
    assert np.isfinite(scores).all()
    assert model.score(np.array([], dtype=np.int64)).shape == (0, split.n_items)


def test_same_seed_same_scores_other_seed_other_scores() -> None:
    split = cyclic_split(n_users=30)
    rows = np.arange(split.n_users)
    a = fitted(split, epochs=3, seed=7).score(rows)
    b = fitted(split, epochs=3, seed=7).score(rows)
    c = fitted(split, epochs=3, seed=8).score(rows)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_max_train_s_stops_a_long_fit() -> None:
    split = cyclic_split(n_users=40)
    start = time.perf_counter()
    model = fitted(split, epochs=1_000_000, max_train_s=0.5)
    assert time.perf_counter() - start < 5.0
    assert model.stopped_by_time
    assert 1 <= model.epochs_run < 1_000_000


def test_bad_use_gets_a_clear_error() -> None:
    split = cyclic_split(n_users=10)
    with pytest.raises(ValueError, match="set_order"):
        SASRec().fit(split.train)
    model = SASRec()
    model.set_order(split.recency_ranks()[:5])
    with pytest.raises(ValueError, match="same split"):
        model.fit(split.train)
    shifted = split.recency_ranks().copy()
    shifted.indices = (shifted.indices + 1) % split.n_items  # same shape and count, other items
    model.set_order(shifted)
    with pytest.raises(ValueError, match="same split"):
        model.fit(split.train)
    with pytest.raises(ValueError, match="before fit"):
        SASRec().score(np.array([0]))
    with pytest.raises(ValueError, match="divisible"):
        SASRec(hidden=10, heads=3)


def test_suggest_draws_every_param_of_the_space() -> None:
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest(study.ask())
    assert set(params) == set(SASREC_SPACE)
    SASRec(**params)  # every drawn combination is a valid model


def test_chunked_loss_trains_like_one_big_softmax(monkeypatch: pytest.MonkeyPatch) -> None:
    split = cyclic_split(n_users=30)
    rows = np.arange(split.n_users)
    whole = fitted(split, epochs=2, dropout=0.0).score(rows)
    monkeypatch.setattr("tooling.offline.sasrec.LOGITS_PER_CHUNK", 7 * split.n_items)  # 7 positions a chunk
    chunked = fitted(split, epochs=2, dropout=0.0).score(rows)
    assert np.allclose(whole, chunked, atol=1e-4)
