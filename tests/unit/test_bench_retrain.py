"""`bench train --dataset movielens-1m`, `bench retrain --train-only` and the run report they read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.settings import EventWeights
from retrain.gate import GateDecision
from retrain.pipeline import RetrainResult
from tooling.bench.train import ML_1M_RATINGS, movielens_1m, run_train


def test_ml_1m_ratings_weigh_as_rate_events(tmp_path: Path) -> None:
    path = tmp_path / ML_1M_RATINGS
    path.parent.mkdir(parents=True)
    path.write_text("user_id,movie_id,rating\n1,10,5\n1,20,3\n7,10,1\n")
    matrix = movielens_1m(tmp_path, EventWeights(rate=0.5))
    assert matrix is not None
    np.testing.assert_allclose(matrix.toarray(), [[2.5, 1.5], [0.5, 0.0]])


def test_missing_ml_1m_is_skipped_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_train(1000, tmp_path / "out.json", factors=8, dataset="movielens-1m", data_dir=tmp_path) is None
    )
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "out.json").exists()


def test_the_cli_writes_the_runs_own_report(tmp_path: Path) -> None:
    from cli.retrain_cmd import write_run_report

    report = {
        "stages": {
            "read": {"wall_s": 1.0, "peak_rss_mib": 90.0},
            "gate": {"wall_s": 0.5, "peak_rss_mib": 95.0},
        },
        "peak_rss_mib": 95.0,
        "read_s": 1.0,
        "after_read_s": 0.5,
        "rss_per_stage": True,
    }
    decision = GateDecision(True, "no champion yet", 0.2, None, 0.005)
    result = RetrainResult("promoted", 100, 2.0, version=3, decision=decision, run_report=report)
    write_run_report(tmp_path / "run.json", result)
    body = json.loads((tmp_path / "run.json").read_text())
    assert body["outcome"] == "promoted" and body["version"] == 3 and body["reason"] == "no champion yet"
    assert body["stages"] == report["stages"] and body["after_read_s"] == 0.5


def test_train_only_reports_the_trainers_own_stages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tooling.bench.retrain import run_train_only

    monkeypatch.setenv("STREAMREC_MODEL__FACTORS", "16")
    report = run_train_only(3000, 100, 300, 2.0, tmp_path / "t.json")
    assert report["interactions"] == 3000 and report["factors"] == 16
    assert list(report["stages"]) == ["simulate", "build", "train", "index"]
    fit = sum(report["stages"][s]["wall_s"] for s in ("build", "train", "index"))
    assert report["fit_s"] == pytest.approx(fit, abs=0.1)
    assert report["peak_rss_mib"] == max(
        report["stages"][s]["peak_rss_mib"] for s in ("build", "train", "index")
    )
    assert json.loads((tmp_path / "t.json").read_text())["trained_items"] == report["trained_items"]
