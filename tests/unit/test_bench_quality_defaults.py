"""The defaults grid's ranking: shares of each set's best validation score, best mean share first."""

from __future__ import annotations

import pytest

from tooling.bench.quality_defaults import grid, rank_configs


def test_rank_prefers_the_best_mean_share_then_the_best_worst_share() -> None:
    scores = {
        "a": {"x": 0.20, "y": 0.10, "z": 0.15},
        "b": {"x": 0.01, "y": 0.02, "z": 0.0175},
    }
    ranked = rank_configs(scores)
    assert [r["config"] for r in ranked] == ["z", "x", "y"]  # x and y tie on both: the grid order stays
    assert ranked[0]["mean_share"] == pytest.approx((0.75 + 0.875) / 2, abs=1e-4)
    assert ranked[0]["worst_share"] == pytest.approx(0.75, abs=1e-4)
    assert ranked[1]["val_ndcg@10"] == {"a": 0.20, "b": 0.01}


def test_the_grid_holds_the_chosen_defaults_and_no_structure_choices() -> None:
    configs = grid()
    assert len(configs) == 3 * 3 * 4
    assert {
        "input_weighting": "binary",
        "reg": 300.0,
        "recency_boost": 6.0,
        "recency_half_life": 4.0,
        "pop_weight": 0.0,
    } in configs.values()
    assert all("factors" not in c and "diag_correction" not in c for c in configs.values())


def test_nothing_to_rank() -> None:
    assert rank_configs({}) == []
