"""Prometheus metrics of the retrain role (served on ``retrain.metrics_port``; 0 turns them off)."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from retrain.pipeline import RetrainResult
from retrain.stages import MIB

log = logging.getLogger(__name__)

OUTCOMES = ("promoted", "rejected", "not_judged", "failed")


class RetrainMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.duration = Gauge("streamrec_retrain_duration_seconds", "Duration of the last run", registry=r)
        self.events = Gauge(
            "streamrec_retrain_events_total", "Events the last run trained and gated on", registry=r
        )
        self.candidate_ndcg = Gauge(
            "streamrec_retrain_candidate_ndcg", "Held-out NDCG@10 of the last candidate", registry=r
        )
        self.champion_ndcg = Gauge(
            "streamrec_retrain_champion_ndcg",
            "Held-out NDCG@10 of the champion it was compared with",
            registry=r,
        )
        self.model_version = Gauge(
            "streamrec_retrain_model_version", "Version of the last published candidate", registry=r
        )
        self.stage_duration = Gauge(
            "streamrec_retrain_stage_duration_seconds",
            "Wall time of each stage of the last successful run (read, scrub, split, build, train, index,"
            " gate, publish)",
            ["stage"],
            registry=r,
        )
        self.stage_peak_rss = Gauge(
            "streamrec_retrain_stage_peak_rss_bytes",
            "Peak resident memory during each stage of the last successful run",
            ["stage"],
            registry=r,
        )
        self.peak_rss = Gauge(
            "streamrec_retrain_peak_rss_bytes", "Peak resident memory of the last successful run", registry=r
        )
        self.runs = Counter("streamrec_retrain_runs", "Retrain runs by outcome", ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.runs.labels(outcome=outcome)

    def observe(self, result: RetrainResult) -> None:
        self.runs.labels(outcome=result.outcome).inc()
        self.duration.set(result.duration_s)
        if result.outcome == "failed":
            # Keep the last good run's figures on the dashboards; the counter shows the failure.
            return
        self.events.set(result.n_events)
        if result.version is not None:
            self.model_version.set(result.version)
        report = result.run_report
        for stage, figures in report.get("stages", {}).items():
            self.stage_duration.labels(stage=stage).set(figures["wall_s"])
            self.stage_peak_rss.labels(stage=stage).set(figures["peak_rss_mib"] * MIB)
        if "peak_rss_mib" in report:
            self.peak_rss.set(report["peak_rss_mib"] * MIB)
        if result.decision is not None:
            self.candidate_ndcg.set(result.decision.candidate_ndcg)
            if result.decision.champion_ndcg is not None:
                self.champion_ndcg.set(result.decision.champion_ndcg)

    def serve(self, port: int) -> None:
        if port == 0:
            return
        try:
            start_http_server(port, registry=self.registry)
        except OSError as exc:
            log.warning("metrics_port_unavailable port=%d error=%s", port, exc)
        else:
            log.info("metrics_serving port=%d", port)
