"""Prometheus metrics of the consumer role."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
