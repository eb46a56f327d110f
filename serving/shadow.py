"""Shadow evaluation: a candidate model ranks a sample of live requests off the request path.

With ``serving.experiments.shadow_version`` set, a ``shadow_fraction`` of recommendation requests
(chosen by a hash of the request id, so the choice is the same on every replica and predictable in
tests) hand the inputs the live answer already read (recent events, exclusions and filters, k) to a
bounded queue; one worker thread ranks them with the shadow model through the same
``serving.ranking.recommend`` and logs the list as a shadow impression
(``impression_id = {request_id}:shadow``, ``shadow: true``), which is stored but never shown or
attributed. The request only builds the job and puts it without waiting; a full queue skips the job
(``streamrec_serving_shadow_skipped_total{reason="queue_full"}``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from core.settings import Settings
from serving.exclusion import excluded_items
from serving.impressions import Shown, offer
from serving.metrics import ServingMetrics
from serving.model_port import LoadedModel
from serving.popularity import TOP_UP_WINDOWS, RealtimeSnapshots
from serving.ranking import Filters, recommend
from storage.impression_log import ImpressionLog
from storage.realtime_reader import UserSnapshot

log = logging.getLogger(__name__)
_BUCKETS = 1 << 64
_STOP = object()


def sampled(request_id: str, fraction: float) -> bool:
    """Whether this request gets a shadow list: a stable hash of its id, below ``fraction``."""
    if fraction <= 0.0:
        return False
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _BUCKETS < fraction


@dataclass(frozen=True, slots=True)
class ShadowJob:
    """The live request's inputs. ``filters`` is the live answer's own; a cache hit built none, and
    the worker builds them from ``snap`` and the in-process snapshots the live answer would use."""

    request_id: str
    user_id: str
    k: int
    category: str | None
    exclude: frozenset[str]
    include_purchased: bool | None
    exclude_seen: bool | None
    snap: UserSnapshot | None
    filters: Filters | None
    now_ms: int
    erased: bool


class ShadowRunner:
    def __init__(
        self,
        settings: Settings,
        version: str,
        model: Callable[[str], LoadedModel | None],
        snapshots: RealtimeSnapshots,
        impression_log: ImpressionLog | None,
        metrics: ServingMetrics,
    ) -> None:
        self.settings = settings
        self.version = version
        self.fraction = settings.serving.experiments.shadow_fraction
        self.model = model
        self.snapshots = snapshots
        self.impression_log = impression_log
        self.metrics = metrics
        self._queue: queue.Queue[object] = queue.Queue(maxsize=settings.serving.experiments.shadow_queue_max)
        self._thread = threading.Thread(target=self._run, name="shadow-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Let the worker finish the job in hand and end (queued jobs are left undone)."""
        while True:
            try:
                self._queue.put_nowait(_STOP)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout_s)

    def sampled(self, request_id: str) -> bool:
        return sampled(request_id, self.fraction)

    def submit(self, job: ShadowJob) -> bool:
        """Queue ``job`` without waiting; False (counted) when the worker is behind."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.metrics.shadow_skipped.labels(reason="queue_full").inc()
            return False
        return True

    # ------------------------------------------------------------ worker thread

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            try:
                assert isinstance(job, ShadowJob)
                self.run_job(job)
            except Exception:  # one bad job must not end shadow evaluation
                log.exception("event=shadow_job_failed")

    def run_job(self, job: ShadowJob) -> bool:
        loaded = self.model(self.version)
        if loaded is None:
            self.metrics.shadow_skipped.labels(reason="no_model").inc()
            return False
        serving = self.settings.serving
        filters = job.filters if job.filters is not None else self._filters(job)
        recent = job.snap.recent[: serving.recent_events_for_session] if job.snap is not None else ()
        ranked = recommend(
            loaded.model,
            user_id=job.user_id,
            k=job.k,
            recent=recent,
            filters=filters,
            popular=self._popular(loaded, job.category, job.k + filters.n_blocked_hint),
            session_weight=serving.session_weight,
            weights=self.settings.model.weights,
            erased=job.erased,
        )
        shown = Shown(
            request_id=job.request_id,
            surface="recommendations",
            user_id=job.user_id,
            model_version=loaded.version,
            items=ranked,
            ts_ms=job.now_ms,
            shadow=True,
        )
        offer(self.impression_log, shown)
        self.metrics.shadow_lists.inc()
        return True

    def _filters(self, job: ShadowJob) -> Filters:
        policy = self.settings.serving.exclusion
        snap = job.snap
        done = (
            frozenset()
            if snap is None
            else excluded_items(
                policy.recommendations,
                policy,
                recent=snap.recent,
                purchased=snap.purchased,
                seen=snap.seen,
                now_ms=job.now_ms,
                include_purchased=job.include_purchased,
                exclude_seen=job.exclude_seen,
            )
        )
        allowed = None
        if job.category is not None:
            allowed = self.snapshots.peek_category(job.category) or frozenset()
        return Filters(
            exclude=job.exclude | done, unavailable=self.snapshots.peek_unavailable(), allowed=allowed
        )

    def _popular(
        self, loaded: LoadedModel, category: str | None, depth: int
    ) -> Iterator[Sequence[tuple[str, float]]]:
        for window in TOP_UP_WINDOWS:
            items = self.snapshots.peek_popular(window, category)
            if items:
                yield items
        if category is None:
            yield loaded.model.popular_items(depth)
