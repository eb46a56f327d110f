from __future__ import annotations

from prometheus_client import generate_latest

from retrain.gate import GateDecision
from retrain.metrics import RetrainMetrics
from retrain.pipeline import RetrainResult


def test_a_run_sets_every_retrain_metric() -> None:
    m = RetrainMetrics()
    decision = GateDecision(True, "ok", candidate_ndcg=0.25, champion_ndcg=0.2, tolerance=0.005)
    m.observe(RetrainResult("promoted", n_events=3000, duration_s=4.5, version=7, decision=decision))
    m.observe(RetrainResult("failed", n_events=0, duration_s=1.5, error="boom"))
    text = generate_latest(m.registry).decode()
    for line in (
        "streamrec_retrain_duration_seconds 1.5",
        "streamrec_retrain_events_total 3000.0",
        "streamrec_retrain_candidate_ndcg 0.25",
        "streamrec_retrain_champion_ndcg 0.2",
        "streamrec_retrain_model_version 7.0",
        'streamrec_retrain_runs_total{outcome="promoted"} 1.0',
        'streamrec_retrain_runs_total{outcome="failed"} 1.0',
        'streamrec_retrain_runs_total{outcome="rejected"} 0.0',
    ):
        assert line in text, line


def test_stage_times_and_peak_rss_of_a_run_are_exported() -> None:
    m = RetrainMetrics()
    decision = GateDecision(True, "ok", candidate_ndcg=0.25, champion_ndcg=None, tolerance=0.005)
    report = {
        "stages": {
            "read": {"wall_s": 12.5, "peak_rss_mib": 100.0},
            "train": {"wall_s": 3.0, "peak_rss_mib": 512.0},
        },
        "peak_rss_mib": 512.0,
    }
    m.observe(RetrainResult("promoted", 10, 16.0, version=1, decision=decision, run_report=report))
    text = generate_latest(m.registry).decode()
    for line in (
        'streamrec_retrain_stage_duration_seconds{stage="read"} 12.5',
        'streamrec_retrain_stage_duration_seconds{stage="train"} 3.0',
        'streamrec_retrain_stage_peak_rss_bytes{stage="train"} 5.36870912e+08',
        "streamrec_retrain_peak_rss_bytes 5.36870912e+08",
    ):
        assert line in text, line
