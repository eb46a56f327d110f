"""The segment-popularity measurement on MovieLens 100k (skipped where the shared data is absent)."""

from __future__ import annotations

import pytest

from tooling.bench.segments import ATTRIBUTES, run
from tooling.offline.datasets import DEFAULT_DATA_DIR


@pytest.mark.skipif(
    not (DEFAULT_DATA_DIR / "movielens-100k" / "u.user").is_file(), reason="MovieLens 100k is not here"
)
def test_report_has_a_decision_per_attribute_that_matches_its_figures() -> None:
    report = run(DEFAULT_DATA_DIR, holdout=0.1, min_users=20, min_eval_users=50)
    assert report["events"] == 100_000 and report["new_users"] > 50
    assert [r["attribute"] for r in report["results"]] == list(ATTRIBUTES)
    for r in report["results"]:
        lo, hi = r["difference_interval"]
        assert lo <= r["segment_ndcg@10"] - r["global_ndcg@10"] <= hi
        assert r["wins"] == (lo > 0.0 and r["eval_users"] >= 50)
