"""The demo's quality step: paired bootstrap, per-user figures, verdict wording, rows, and the whole
comparison on simulated data with enough users."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.sparse as sp

from model.lae import TrainConfig
from model.metrics import paired_bootstrap, per_user_at_k, summarize
from retrain.event_source import to_event_table
from tooling.demo.data import simulated
from tooling.demo.quality import (
    MIN_USERS,
    Comparison,
    Difference,
    ModelFigures,
    compare,
    difference_cells,
    figure_cells,
    interval_verdict,
    summary_line,
    users_note,
)
from tooling.offline.evaluation import UserEvaluation, evaluate, evaluate_users


def test_interval_verdict_comes_from_the_interval_alone() -> None:
    assert interval_verdict(0.001, 0.2) == "better"
    assert interval_verdict(-0.2, -0.001) == "worse"
    assert interval_verdict(-0.01, 0.3) == "no clear difference"
    assert interval_verdict(0.0, 0.3) == "no clear difference"  # zero inside the interval is not excluded
    assert interval_verdict(float("nan"), float("nan")) == "no clear difference"


def test_paired_bootstrap_of_a_constant_shift_is_that_shift() -> None:
    a = np.linspace(0.0, 1.0, 50)
    mean, lo, hi = paired_bootstrap(a + 0.1, a)
    assert mean == pytest.approx(0.1)
    assert lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_paired_bootstrap_separates_a_clear_gain_from_noise() -> None:
    rng = np.random.default_rng(1)
    base = rng.random(300)
    # Per-user gain of 0.05 with small noise: the interval excludes zero.
    mean, lo, hi = paired_bootstrap(base + 0.05 + rng.normal(0, 0.02, 300), base)
    assert 0.0 < lo < mean < hi
    # Pure noise around the same figures: the interval holds zero.
    _, lo, hi = paired_bootstrap(base + rng.normal(0, 0.2, 300), base)
    assert lo < 0.0 < hi
    # Pairing matters: each user's own level cancels, so the interval is far narrower than unpaired.
    _, lo_p, hi_p = paired_bootstrap(base + 0.01, base)
    assert hi_p - lo_p < 1e-9


def test_paired_bootstrap_is_reproducible_and_checks_its_input() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.random(40), rng.random(40)
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap(a, b[:-1])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(a, b, level=1.5)
    assert all(np.isnan(paired_bootstrap(np.zeros(0), np.zeros(0))))


def _test_matrix(rows: list[list[int]], n_items: int = 10) -> sp.csr_matrix:
    data = [(r, c) for r, cols in enumerate(rows) for c in cols]
    r, c = zip(*data, strict=True)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(rows), n_items))


def test_per_user_figures_average_to_summarize() -> None:
    top = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 1, 2, 3]])
    test = _test_matrix([[2, 4, 9], [], [0]])  # the second user has no test item: not evaluated
    per_user = per_user_at_k(top, test, k=4)
    assert per_user["hr@4"].tolist() == [1.0, 1.0]
    assert per_user["recall@4"].tolist() == pytest.approx([2 / 3, 1.0])
    means = summarize(top, test, ks=(4,))
    for metric in ("ndcg@4", "recall@4", "hr@4"):
        assert per_user[metric].mean() == pytest.approx(means[metric])


def test_evaluate_users_matches_evaluate() -> None:
    rng = np.random.default_rng(3)
    train = sp.csr_matrix((rng.random((30, 60)) < 0.2).astype(np.float32))
    test = sp.csr_matrix(((rng.random((30, 60)) < 0.05) & (train.toarray() == 0)).astype(np.float32))
    weights = rng.random((60, 60))

    def score(rows: np.ndarray) -> np.ndarray:
        return np.asarray(train[rows] @ weights)

    metrics, curves = evaluate(score, train, test, with_curves=True)
    detailed = evaluate_users(score, train, test)
    assert detailed.metrics == metrics and detailed.curves == curves
    assert detailed.users == int((np.diff(test.indptr) > 0).sum())
    assert detailed.per_user["ndcg@10"].mean() == pytest.approx(metrics["ndcg@10"])
    # A catalog smaller than K: the missing ranks count as misses, the curves still run to K = 50.
    small = evaluate_users(lambda rows: np.ones((len(rows), 3)), train[:, :3], test[:, :3])
    assert len(small.curves["ndcg"]) == 50


def _evaluation(per_user_hr: list[float], ndcg: list[float]) -> UserEvaluation:
    hr = np.array(per_user_hr)
    nd = np.array(ndcg)
    return UserEvaluation(
        users=len(hr),
        metrics={"ndcg@10": float(nd.mean()), "recall@10": float(hr.mean()), "hr@10": float(hr.mean())},
        per_user={"ndcg@10": nd, "recall@10": hr, "hr@10": hr},
        curves={"recall": [0.0], "ndcg": [0.0]},
    )


def test_rows_and_wording() -> None:
    strong = _evaluation([1.0, 1.0, 1.0, 0.0], [0.9, 0.8, 0.7, 0.0])
    weak = _evaluation([0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0])
    same = strong
    assert figure_cells(strong) == ["0.6000", "0.7500", "0.7500", "3/4"]
    assert difference_cells(Difference(0.05, 0.01, 0.09)) == ["+0.0500", "[+0.0100, +0.0900]", "better"]
    assert difference_cells(Difference(-0.05, -0.09, 0.01))[2] == "no clear difference"
    assert difference_cells(Difference(-0.05, -0.09, -0.01))[2] == "worse"
    comparison = Comparison(
        users=4,
        split_users=4,
        items=10,
        models=[
            ModelFigures("streamrec", "", strong),
            ModelFigures("EASE", "", same),
            ModelFigures("popularity", "", weak),
        ],
    )
    assert comparison.difference(comparison.baselines[1], "ndcg@10").verdict == "better"
    line = summary_line(comparison)
    assert line.startswith("NDCG@10: streamrec is not clearly different from EASE and better than popularity")
    assert "over 4 users" in line


def test_users_note_says_plainly_when_there_are_too_few_users() -> None:
    assert users_note(MIN_USERS) is None
    note = users_note(MIN_USERS - 1)
    assert note is not None and f"only {MIN_USERS - 1} users" in note and "--events" in note


def test_compare_evaluates_every_user_the_data_has_on_simulated_data() -> None:
    # 240 simulated shoppers (the demo's sizing: ~40 events each): at least 100 are evaluated.
    data = simulated(9_600, seed=7, end=datetime(2026, 1, 1, tzinfo=UTC))
    table = to_event_table(data.events)
    comparison = compare(table, TrainConfig(factors=64))
    n_users = len(set(table.user_id.tolist()))
    assert comparison.users >= MIN_USERS
    assert comparison.users <= comparison.split_users <= n_users
    names = [m.name for m in comparison.models]
    assert names[0] == "streamrec" and names[-1] == "popularity" and names[1] in ("EASE", "ItemKNN")
    assert "best cheap baseline on validation" in comparison.models[1].detail
    for model in comparison.models:
        assert len(model.evaluation.per_user["ndcg@10"]) == comparison.users
        assert len(model.evaluation.curves["ndcg"]) == 50
    assert comparison.notes == []
