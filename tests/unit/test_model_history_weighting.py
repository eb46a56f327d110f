"""Input weighting and history order (ModelSettings.input_weighting / history_order) in training,
fold-in and the settings; the semantics match the quality benchmark's input modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from core.settings import ModelSettings, Settings
from model.history_weighting import fold_history, weigh_pairs
from model.interactions import interactions_from_arrays
from tooling.offline.input_weights import input_matrix
from tooling.offline.split import temporal_split

USERS = np.array(["a", "a", "a", "a", "b"])
ITEMS = np.array(["x", "y", "x", "x", "y"])
WEIGHTS = np.array([1.0, 5.0, 1.0, 1.0, 3.0])
TS = np.array([10, 20, 30, 40, 5], dtype=np.int64)


def _pair(inter, user: str, item: str, matrix: str = "matrix") -> float:  # type: ignore[no-untyped-def]
    row = int(np.flatnonzero(inter.user_ids == user)[0])
    col = int(np.flatnonzero(inter.item_ids == item)[0])
    return float(getattr(inter, matrix)[row, col])


def test_defaults_and_the_legacy_linear_mode() -> None:
    s = ModelSettings()
    assert (s.input_weighting, s.history_order) == ("binary", "latest")  # fitted on validation
    # Without settings (an artifact from before them), the pair weights are linear, as they were.
    inter = interactions_from_arrays(USERS, ITEMS, WEIGHTS, TS)
    assert _pair(inter, "a", "x") == 3.0  # three views add up
    assert _pair(inter, "a", "x", "last_ts") == 40  # the latest of them orders the history


@pytest.mark.parametrize(
    ("weighting", "a_x", "a_y"),
    [("linear", 3.0, 5.0), ("binary", 1.0, 1.0), ("log", 1.0 + math.log(3.0), 1.0 + math.log(5.0))],
)
def test_pair_weighting(weighting: str, a_x: float, a_y: float) -> None:
    inter = interactions_from_arrays(USERS, ITEMS, WEIGHTS, TS, weighting=weighting)
    assert _pair(inter, "a", "x") == pytest.approx(a_x)
    assert _pair(inter, "a", "y") == pytest.approx(a_y)


def test_first_order_keeps_each_pairs_first_timestamp() -> None:
    inter = interactions_from_arrays(USERS, ITEMS, WEIGHTS, TS, order="first")
    assert _pair(inter, "a", "x", "last_ts") == 10
    # x was touched first (10) and y later (20): under "first" x is one step back, under "latest"
    # (x last at 40) y is.
    row_a, x, y = 0, 0, 1
    assert inter.recency_ranks()[row_a, x] == 1.0
    latest = interactions_from_arrays(USERS, ITEMS, WEIGHTS, TS)
    assert latest.recency_ranks()[row_a, y] == 1.0


def test_log_below_one_is_one_like_the_benchmark() -> None:
    assert weigh_pairs(np.array([0.5, 1.0, math.e]), "log").tolist() == pytest.approx([1.0, 1.0, 2.0])


def test_log_and_binary_match_the_benchmarks_input_modes() -> None:
    """The benchmark's ``input_matrix`` on the protocol's pairs equals training's matrix under the same
    mode (single-event pairs: the protocol keeps one pair per first timestamp)."""
    rng = np.random.default_rng(0)
    users = np.repeat([f"u{i}" for i in range(8)], 6)
    items = np.array([f"i{j}" for j in rng.integers(0, 40, len(users))])
    ts = np.arange(len(users), dtype=np.int64)
    split = temporal_split(users, items, ts, test_fraction=0.2, min_items=2)
    tr_users, tr_items, tr_ts = split.train_triples()
    strength = split.train.copy()
    strength.data = rng.choice([1.0, 3.0, 5.0], size=strength.nnz).astype(np.float32)
    for mode in ("binary", "log"):
        expected = input_matrix(split, strength, mode)
        coo = strength.tocoo()
        inter = interactions_from_arrays(
            split.user_ids[coo.row],
            split.item_ids[coo.col],
            coo.data.astype(np.float64),
            tr_ts,
            weighting=mode,
        )
        assert np.array_equal(inter.item_ids, split.item_ids)
        assert np.allclose(
            inter.matrix.toarray(), expected.toarray()[np.isin(split.user_ids, inter.user_ids)]
        )
    assert len(tr_users) == len(tr_items)


def test_fold_history_default_is_per_event_else_per_item() -> None:
    events = [("x", 1.0), ("y", 5.0), ("x", 1.0), ("z", 0.0)]
    assert fold_history(events, "linear", "latest") == events
    assert fold_history(events, "linear", "first") == [("x", 2.0), ("y", 5.0)]
    assert fold_history(events, "binary", "latest") == [("y", 1.0), ("x", 1.0)]
    log = fold_history(events, "log", "latest")
    assert [i for i, _ in log] == ["y", "x"] and log[0][1] == pytest.approx(1 + math.log(5))


def test_settings_from_environment_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_MODEL__INPUT_WEIGHTING", "log")
    monkeypatch.setenv("STREAMREC_MODEL__HISTORY_ORDER", "first")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.model.input_weighting, s.model.history_order) == ("log", "first")
    with pytest.raises(ValidationError):
        ModelSettings(input_weighting="sqrt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown input weighting"):
        weigh_pairs(np.ones(2), "sqrt")
