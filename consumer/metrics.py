"""Prometheus metrics of the consumer role."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaException
from prometheus_client import Counter, Gauge, Histogram

if TYPE_CHECKING:
    from consumer.processor import BatchOutcome

log = logging.getLogger(__name__)

EVENTS = Counter(
    "streamrec_consumer_events_total",
    "Records consumed, by event type ('item' for catalog updates) and outcome",
    ["type", "outcome"],
)
BATCH_SECONDS = Histogram(
    "streamrec_consumer_batch_seconds",
    "Time to make one batch durable (MongoDB, dead letters, Redis), retries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
COMMITS = Counter("streamrec_consumer_commits_total", "Synchronous offset commits that succeeded")
SINK_RETRIES = Counter(
    "streamrec_consumer_sink_retries_total", "Batch retries because a sink was unavailable", ["sink"]
)
# Online quality (issue 14): CTR = attributed clicks / impressions, per model version and variant.
IMPRESSIONS = Counter(
    "streamrec_consumer_impressions_total",
    "Served lists stored now (shadow lists and redeliveries not counted), by surface, model version "
    "and variant",
    ["surface", "model_version", "variant"],
)
ATTRIBUTED = Counter(
    "streamrec_consumer_attributed_events_total",
    "Stored events credited to an impression (when stored, or later when the impression arrived after "
    "them), by event type, the impression's model version and variant, and how (by id or by window)",
    ["event_type", "model_version", "variant", "by"],
)
# Credits given after the event was stored (core.late_attribution): ``new`` ones are in ATTRIBUTED too;
# ``upgraded`` (window → id) and ``moved`` (to a newer impression) ones stay counted where first credited.
LATE_ATTRIBUTIONS = Counter(
    "streamrec_consumer_late_attributions_total",
    "Stored events credited or re-credited by an impression that arrived after them, by event type, the "
    "impression's model version and variant, how (by id or by window) and the change (new, upgraded, moved)",
    ["event_type", "model_version", "variant", "by", "change"],
)
LAG = Gauge(
    "streamrec_consumer_lag_messages", "Messages behind the high watermark on this member's partitions"
)
REDIS_REBUILDS = Counter(
    "streamrec_consumer_redis_rebuilds_total",
    "Automatic rebuilds of Redis from MongoDB after the consumer found it empty (generation marker missing)",
)
PRODUCER_REBUILDS = Counter(
    "streamrec_consumer_producer_rebuilds_total",
    "Dead-letter producers replaced after a fatal error or lost producer state",
)
STORE_AHEAD_PARTITIONS = Gauge(
    "streamrec_consumer_store_ahead_partitions",
    "Partitions stored in MongoDB while Redis was down, waiting to be read again for their effects",
)


def record_batch(outcome: BatchOutcome, seconds: float) -> None:
    """The counts of one batch made durable."""
    BATCH_SECONDS.observe(seconds)
    for (kind, result), n in outcome.counts.items():
        EVENTS.labels(type=kind, outcome=result).inc(n)
    for (surface, version, variant), n in outcome.impressions.items():
        IMPRESSIONS.labels(surface=surface, model_version=version, variant=variant).inc(n)
    for (etype, version, variant, by), n in outcome.attributed.items():
        ATTRIBUTED.labels(event_type=etype, model_version=version, variant=variant, by=by).inc(n)
    for (etype, version, variant, by, change), n in outcome.late.items():
        LATE_ATTRIBUTIONS.labels(
            event_type=etype, model_version=version, variant=variant, by=by, change=change
        ).inc(n)


def record_lag(consumer: Consumer) -> None:
    """Records behind the high watermark over the assigned partitions (cached watermarks)."""
    try:
        lag = 0
        for tp in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            if tp.offset >= 0 and high >= 0:
                lag += max(0, high - tp.offset)
        LAG.set(lag)
    except KafkaException as exc:
        log.debug("event=lag_unavailable error=%s", exc)
