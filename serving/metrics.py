"""Serving metrics, on a registry per app (several apps can live in one test process).

With several uvicorn workers each process counts on its own, and a scrape reaches whichever worker
accepts it; Prometheus' multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) makes the counters and
histograms shared files that ``/metrics`` sums over all workers. ``prepare_multiprocess_dir`` sets it
up before the workers start (``streamrec serve --workers N``).
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Callable, Iterator, MutableMapping

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from storage.impression_log import DROP_REASONS, ImpressionCounts

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(workers: int, environ: MutableMapping[str, str]) -> tuple[str | None, bool]:
    """(the multiprocess directory or None, whether it was created here and is ours to remove).

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used (and created if missing); without one, more than
    one worker gets a fresh temporary directory, since per-worker counters scraped at random would
    jump back and forth. Files left by an earlier run are removed first, as prometheus_client requires:
    their counts would otherwise be added to this run's."""
    path = environ.get(MULTIPROC_ENV)
    if path is None:
        if workers <= 1:
            return None, False
        path = tempfile.mkdtemp(prefix="streamrec-prometheus-")
        environ[MULTIPROC_ENV] = path
        return path, True
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)
    return path, False


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # Collectors that read a live object's counts at scrape time (no shared file behind them).
        self.pulled: list[Collector] = []
        self.cache_hits = Counter(
            "streamrec_serving_cache_hits_total",
            "Recommendation results served from the cache",
            registry=registry,
        )
        self.cache_misses = Counter(
            "streamrec_serving_cache_misses_total", "Recommendation results computed", registry=registry
        )
        self.fallbacks = Counter(
            "streamrec_serving_fallbacks_total",
            "Responses (or parts) served by a fallback",
            ["kind"],
            registry=registry,
        )
        self.degraded = Counter(
            "streamrec_serving_degraded_responses_total",
            "Responses flagged degraded because a dependency was down",
            registry=registry,
        )
        self.model_version = Gauge(
            "streamrec_serving_model_version",
            "Version of the model being served (0: none)",
            registry=registry,
            # Multiprocess mode: one sample per live worker (label pid), so min() shows a lagging one.
            multiprocess_mode="liveall",
        )
        self.cold_items = Gauge(
            "streamrec_serving_cold_items",
            "Catalog items served by their content embedding (no collaborative one yet; serving.cold_start)",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.model_load_failures = Counter(
            "streamrec_serving_model_load_failures_total",
            "Model versions refused because they failed to load or validate",
            registry=registry,
        )
        self.model_swaps = Counter(
            "streamrec_serving_model_swaps_total", "Models swapped in", registry=registry
        )
        self.shadow_lists = Counter(
            "streamrec_serving_shadow_lists_total",
            "Shadow lists computed by the shadow model and offered to the impression log",
            registry=registry,
        )
        self.shadow_skipped = Counter(
            "streamrec_serving_shadow_skipped_total",
            "Sampled requests whose shadow list was not computed (queue_full: the shadow worker is "
            "behind; no_model: the shadow version is not loaded)",
            ["reason"],
            registry=registry,
        )

    def count_producer_rebuilds(self, rebuilds: Callable[[], int]) -> None:
        """Export the ingest producer's own rebuild count (the producer is built before the app)."""
        self._pull(_RebuildCounter(rebuilds))

    def count_impressions(self, counts: Callable[[], ImpressionCounts] | None) -> None:
        """Export the impression log's own counts (the log is built before the app; None: disabled)."""
        self._pull(_ImpressionCounter(counts or ImpressionCounts))

    def _pull(self, collector: Collector) -> None:
        self.pulled.append(collector)
        self.registry.register(collector)

    def exposition_registry(self) -> CollectorRegistry:
        """What /metrics renders: this registry, or in multiprocess mode the counters and histograms
        of every worker summed from the shared files plus the answering worker's pulled counts,
        labelled with its pid (they live in that worker's memory only; a sum over pids is the total
        once each worker has answered a scrape)."""
        if multiprocess_dir() is None:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in self.pulled:
            registry.register(PerProcess(collector))
        return registry


class PerProcess(Collector):
    """Another collector's samples with a ``pid`` label: the worker they were read in."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def collect(self) -> Iterator[Metric]:
        pid = str(os.getpid())
        for family in self.inner.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                out.add_sample(sample.name, {**sample.labels, "pid": pid}, sample.value, sample.timestamp)
            yield out


class _ImpressionCounter(Collector):
    def __init__(self, counts: Callable[[], ImpressionCounts]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self.counts()
        yield CounterMetricFamily(
            "streamrec_serving_impressions_queued",
            "Impressions queued for the impressions topic",
            value=counts.queued,
        )
        yield CounterMetricFamily(
            "streamrec_serving_impressions_sent",
            "Impressions acknowledged by Kafka",
            value=counts.sent,
        )
        dropped = CounterMetricFamily(
            "streamrec_serving_impressions_dropped",
            "Impressions not logged, by reason (queue_full, delivery_failed, closed, invalid); "
            "the answers were served",
            labels=["reason"],
        )
        for reason in DROP_REASONS:
            dropped.add_metric([reason], counts.dropped.get(reason, 0))
        yield dropped


class _RebuildCounter(Collector):
    def __init__(self, rebuilds: Callable[[], int]) -> None:
        self.rebuilds = rebuilds

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "streamrec_serving_producer_rebuilds",
            "Ingest producers replaced after a fatal error or lost producer state",
            value=self.rebuilds(),
        )
