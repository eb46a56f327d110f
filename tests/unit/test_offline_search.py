"""The benchmark's one search procedure: equal trials for every model, seeded, edges reported."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tooling.offline.search import Dim, edge_report, search


def test_every_model_gets_exactly_the_trials_asked_for() -> None:
    calls: list[dict[str, Any]] = []

    def objective(params: dict[str, Any]) -> float:
        calls.append(params)
        return -abs(math.log10(float(params["lam"])) - 2.0)

    space = {"lam": Dim(1.0, 1e5, log=True)}
    result = search(objective, space, trials=7, seed=1)
    assert result.trials == 7 and len(calls) == 7 and len(result.history) == 7
    # A second model with a larger space gets the same count.
    other = search(lambda p: -(float(p["a"]) ** 2), {"a": Dim(-1.0, 1.0), "b": Dim(choices=(1, 2))}, trials=7)
    assert other.trials == 7


def test_the_search_is_seeded_and_starts_from_the_given_default() -> None:
    def objective(params: dict[str, Any]) -> float:
        return -((float(params["x"]) - 0.3) ** 2)

    space = {"x": Dim(0.0, 1.0)}
    first = search(objective, space, trials=6, seed=3, first=({"x": 0.5},))
    again = search(objective, space, trials=6, seed=3, first=({"x": 0.5},))
    assert [h for h, _ in first.history] == [h for h, _ in again.history]
    assert first.history[0][0] == {"x": 0.5}
    # A default outside the range is left to the sampler rather than forced in.
    outside = search(objective, {"x": Dim(0.1, 1.0, log=True)}, trials=2, seed=3, first=({"x": 0.0},))
    assert all(0.1 <= h["x"] <= 1.0 for h, _ in outside.history)
    assert first.value == max(v for _, v in first.history)


def test_fixed_params_reach_the_objective_and_the_result() -> None:
    seen: list[dict[str, Any]] = []

    def objective(params: dict[str, Any]) -> float:
        seen.append(params)
        return 0.0

    result = search(objective, {"x": Dim(0.0, 1.0)}, 2, fixed={"iterations": 15})
    assert all(p["iterations"] == 15 for p in seen)
    assert result.params["iterations"] == 15


def test_an_empty_space_is_one_evaluation() -> None:
    result = search(lambda p: 0.25, {}, trials=20)
    assert result.trials == 1 and result.value == 0.25 and result.edge_params == []


def test_edges_are_reported_unless_the_end_is_natural() -> None:
    lam = Dim(1.0, 1e4, log=True)
    assert lam.edge(1.2) == "low" and lam.edge(9000.0) == "high" and lam.edge(100.0) is None
    boost = Dim(0.0, 30.0, natural_low=True)
    assert boost.edge(0.0) is None and boost.edge(29.9) == "high"
    factors = Dim(16, 610, log=True, integer=True, natural_high=True)  # 610 = the data's rank
    assert factors.edge(610) is None and factors.edge(16) == "low"
    assert Dim(choices=(True, False)).edge(True) is None
    report = edge_report({"lam": lam, "boost": boost}, {"lam": 9000.0, "boost": 3.0})
    assert report == ["lam=9000 (high edge of [1, 10000])"]


def test_a_search_that_runs_into_a_narrow_range_says_so() -> None:
    # The optimum (x = 5) lies outside [0, 1]: the best choice sits on the high edge.
    result = search(lambda p: -abs(float(p["x"]) - 5.0), {"x": Dim(0.0, 1.0)}, trials=15, seed=0)
    assert result.edge_params and "high edge" in result.edge_params[0]


def test_bad_ranges_are_refused() -> None:
    with pytest.raises(ValueError, match="low < high"):
        Dim(2.0, 1.0)
    with pytest.raises(ValueError, match="log range"):
        Dim(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="trials"):
        search(lambda p: 0.0, {"x": Dim(0.0, 1.0)}, trials=0)
