"""The consumer-group member: poll a batch, make it durable, commit, repeat.

Sink outages (MongoDB, Redis, the dead-letter producer) never crash the process: the batch is
retried with bounded exponential backoff while the assigned partitions are paused and the consumer
keeps polling, so the member stays in its group. Nothing is committed until the batch succeeds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from consumer import metrics
from consumer.batch import RawMessage
from consumer.dead_letters import KafkaDeadLetterSink
from consumer.kafka_records import fmt_partitions, short_error, to_raw
from consumer.partition_ownership import ManualAssignment
from consumer.processor import BatchOutcome, BatchProcessor, SinkUnavailable, as_sink_error
from consumer.sink_retry import sink_retrying
from consumer.store_ahead import StoreAhead
from consumer.wiring import KafkaClients
from core.errors import StreamrecError
from core.realtime_ops import TopicPartition as TP
from core.settings import Settings
from storage.event_store import EventStore
from storage.impressions import ImpressionStore
from storage.kafka import is_fatal, refuses_static_membership
from storage.realtime_state import RealtimeState

log = logging.getLogger(__name__)
T = TypeVar("T")
LAG_EVERY_S = 5.0
# While Redis is down (consumer.store_ahead), how often to ask whether it is back.
REDIS_PROBE_EVERY_S = 1.0


class FatalKafkaError(StreamrecError):
    """Kafka reported an error no retry can fix (authentication, authorization, bad config)."""


class ConsumerRunner:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        state: RealtimeState,
        kafka: KafkaClients,
        *,
        impressions: ImpressionStore,
    ) -> None:
        self.settings = settings
        self.store = store
        self.impressions = impressions
        self.state = state
        self.stopping = False
        self._fatal: str | None = None
        self._pending: list[RawMessage] = []
        self._carry: list[RawMessage] = []
        self._uncommitted: dict[TP, int] = {}
        self._paused = False
        self._lag_at = 0.0
        self._kafka = kafka
        # Static group membership (STREAMREC_CONSUMER__INSTANCE_ID) until the broker refuses it.
        self.static = kafka.instance_id is not None
        # STREAMREC_CONSUMER__PARTITIONS: a fixed share of the partitions instead of group membership.
        share = settings.consumer.partitions
        self._manual = ManualAssignment(self._topics(), share) if share else None
        self._static_refused: str | None = None
        self.consumer: Consumer = kafka.consumer(self._on_error, self.static)
        self.producer = kafka.dead_letters
        sink = KafkaDeadLetterSink(
            self.producer,
            settings.kafka.topics.dead_letter,
            timeout_s=settings.consumer.dead_letter_timeout_s,
            should_stop=lambda: self.stopping,
        )
        self.processor = BatchProcessor(settings, store, state, sink, impressions=impressions)
        self._watchdog: threading.Timer | None = None
        self._hard_exit = False
        self.processor.effects.should_stop = lambda: self.stopping
        self._ahead = StoreAhead(probe_every_s=REDIS_PROBE_EVERY_S)

    # ------------------------------------------------------------ lifecycle

    def request_stop(self, *_: Any) -> None:
        if not self.stopping:
            log.info("event=stop_requested action=finish_batch_commit_close")
            if self._hard_exit:
                self._start_watchdog()
        self.stopping = True

    def install_signal_handlers(self) -> None:
        """For the process's main: SIGTERM/SIGINT stop the loop, and the grace period is enforced."""
        self._hard_exit = True
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def _start_watchdog(self) -> None:
        # Every wait in the loop checks ``stopping``, so this should never fire; it guarantees the
        # grace period even if a client call blocks (e.g. close() against a dead broker). Exiting
        # without a commit is safe: uncommitted records come again and the applied offsets absorb them.
        grace = self.settings.consumer.shutdown_grace_s

        def expire() -> None:
            log.error("event=shutdown_grace_exceeded grace_s=%.1f action=exit_without_commit", grace)
            logging.shutdown()
            os._exit(1)

        self._watchdog = threading.Timer(grace, expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def run(self) -> int:
        topics = self._topics()
        try:
            if self._with_backoff(self._ensure_indexes) is None:
                return 0
            self.processor.effects.rebuild_if_empty(time.time())
            self._subscribe(topics)
            log.info(
                "event=consumer_started group=%s topics=%s instance_id=%s",
                self.settings.kafka.group_id,
                ",".join(topics),
                self._kafka.instance_id if self.static else "-",
            )
            while not self.stopping:
                if self._static_refused is not None:
                    self._rejoin_dynamic(topics)
                self._check_fatal()
                if self._manual is not None:
                    self._manual.refresh(self.consumer, paused=self._paused)
                if self._ahead.active and self._ahead.probe_due():
                    self._reread_if_redis_back()
                batch = self._carry + self._decode(
                    self.consumer.consume(
                        self.settings.consumer.batch_size, self.settings.consumer.batch_wait_s
                    )
                )
                self._carry = []
                if batch:
                    self._handle(batch)
                self._update_lag()
            return 0
        finally:
            self._close()

    def _topics(self) -> list[str]:
        names = self.settings.kafka.topics
        return [names.events, names.items, names.impressions]

    def _subscribe(self, topics: list[str]) -> None:
        if self._manual is not None:
            self._manual.refresh(self.consumer, paused=self._paused, force=True)
            return
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _rejoin_dynamic(self, topics: list[str]) -> None:
        """The broker refused static membership (or another consumer holds our instance id): leave
        with this client and join again as a dynamic member. Between batches, so nothing is in hand;
        offsets not yet committed are dropped, and their records come again (the applied offsets
        absorb them)."""
        log.warning(
            "event=static_membership_refused instance_id=%s action=rejoin_as_dynamic_member error=%s",
            self._kafka.instance_id,
            self._static_refused,
        )
        try:
            self._drop(list(self.consumer.assignment()))
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.info("event=static_consumer_close_failed error=%s", exc)
        self._uncommitted.clear()
        self._paused = False
        self.static = False
        self._static_refused = None
        self._fatal = None
        self.consumer = self._kafka.consumer(self._on_error, False)
        self._subscribe(topics)

    def _ensure_indexes(self) -> bool:
        self.store.ensure_indexes()
        # The TTL index is what enforces the configured retention of impressions.
        self.impressions.ensure_indexes(self.settings.serving.impressions.retention_days * 86400.0)
        return True

    def _close(self) -> None:
        try:
            self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("event=consumer_close_failed error=%s", exc)
        # Every dead letter a committed batch needed is acknowledged already: nothing to wait for.
        self.producer.close(0.5)
        log.info("event=consumer_stopped")
        if self._watchdog is not None:
            self._watchdog.cancel()

    # ------------------------------------------------------------ batches

    def _decode(self, msgs: list[Message]) -> list[RawMessage]:
        out: list[RawMessage] = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                out.append(to_raw(msg))
            elif self.static and refuses_static_membership(err):
                self._static_refused = err.str()
            elif is_fatal(err):
                raise FatalKafkaError(f"fatal Kafka error, stopping: {err.str()}")
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("event=kafka_error code=%s error=%s", err.name(), err.str())
        return out

    def _handle(self, batch: list[RawMessage]) -> None:
        self._pending = batch
        started = time.monotonic()
        ahead = self._ahead.active
        outcome = self._with_backoff(lambda: self._process(ahead))
        if outcome is None:
            log.warning("event=batch_abandoned reason=stopping uncommitted=%d", len(self._pending))
            return
        metrics.record_batch(outcome, time.monotonic() - started)
        if outcome.deferred:
            self._ahead.note(self._pending)
            metrics.STORE_AHEAD_PARTITIONS.set(len(self._ahead.replay_from))
        else:
            self._commit(outcome)
        self._pending = []

    def _process(self, ahead: bool) -> BatchOutcome:
        """The batch through the sinks; with Redis down, stored in MongoDB and deferred."""
        if ahead:
            return self.processor.process(self._pending, effects=False)
        try:
            return self.processor.process(self._pending)
        except SinkUnavailable as exc:
            if exc.sink != "redis":
                raise
            # MongoDB holds the batch and its dead letters are out: keep storing, apply effects later.
            log.warning(
                "event=redis_unavailable action=store_ahead_then_reread error=%s", short_error(exc.error)
            )
            return BatchOutcome(deferred=True)

    def _reread_if_redis_back(self) -> None:
        """Redis answers again: read every deferred partition again from its first deferred record."""
        try:
            self.state.ping()
        except Exception:  # any failure means "not yet"; the next probe asks again
            return
        targets = self._ahead.take()
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for (topic, partition), offset in targets.items():
            if (topic, partition) not in assigned:
                continue  # revoked meanwhile: its new owner starts at the committed offset
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("event=reread_seek_failed partition=%s[%d] error=%s", topic, partition, exc)
                self._ahead.replay_from[(topic, partition)] = offset
        self._carry = [m for m in self._carry if m.tp not in targets]
        metrics.STORE_AHEAD_PARTITIONS.set(len(self._ahead.replay_from))
        log.info("event=redis_recovered action=reread partitions=%d", len(targets))

    def _commit(self, outcome: BatchOutcome) -> None:
        self._uncommitted.update(outcome.commit)
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items() if (t, p) in assigned]
        if not offsets:
            self._uncommitted.clear()
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            metrics.COMMITS.inc()
            self._uncommitted.clear()
        except KafkaException as exc:
            # Not fatal: the records come again and the applied offsets absorb them.
            log.warning("event=commit_failed partitions=%d error=%s", len(offsets), exc)

    # ------------------------------------------------------------ outages

    def _with_backoff(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` until it succeeds or a stop is requested (then None)."""
        retrying = sink_retrying(self.settings.consumer, lambda: self.stopping, self._sleep_polling)
        try:
            result = retrying(lambda: as_sink_error(fn))
        except SinkUnavailable:
            if self.stopping:
                return None
            raise
        if self._paused:
            self._resume()
        return result

    def _sleep_polling(self, seconds: float) -> None:
        """Wait while serving the group protocol (rebalances, liveness) on paused partitions."""
        if not self._paused:
            self._pause()
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            msg = self.consumer.poll(min(left, 0.2))
            if msg is not None:
                # A record fetched before the pause took effect: keep it for after the batch.
                self._carry += self._decode([msg])
            self._check_fatal()

    def _pause(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(assignment)
        self._paused = True
        log.info("event=partitions_paused count=%d", len(assignment))

    def _resume(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.resume(assignment)
        self._paused = False
        log.info("event=sink_recovered partitions_resumed=%d", len(assignment))

    # ------------------------------------------------------------ Kafka callbacks

    def _on_error(self, err: KafkaError) -> None:
        if self.static and refuses_static_membership(err):
            self._static_refused = err.str()
        elif is_fatal(err):
            self._fatal = err.str()
        else:
            log.warning("event=kafka_client_error code=%s error=%s", err.name(), err.str())

    def _check_fatal(self) -> None:
        if self._fatal and self._static_refused is None:
            raise FatalKafkaError(f"fatal Kafka error, stopping: {self._fatal}")

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("event=partitions_assigned partitions=%s", fmt_partitions(partitions))
        if self._paused and partitions:
            # A partition handed over during an outage must not start fetching: assign it here
            # (the client then skips its own assign) and pause it at once.
            try:
                consumer.incremental_assign(partitions)
                consumer.pause(partitions)
                log.info("event=partitions_paused count=%d reason=assigned_during_outage", len(partitions))
            except KafkaException as exc:
                log.warning("event=pause_on_assign_failed error=%s", exc)

    def _drop(self, partitions: list[TopicPartition]) -> set[TP]:
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._ahead.forget(gone)
        # Records of partitions this member no longer owns are the new owner's to process.
        self._pending[:] = [m for m in self._pending if m.tp not in gone]
        self._carry = [m for m in self._carry if m.tp not in gone]
        return gone

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = self._drop(partitions)
        done = [TopicPartition(t, p, o) for (t, p), o in self._uncommitted.items() if (t, p) in gone]
        if done:
            try:
                consumer.commit(offsets=done, asynchronous=False)
                metrics.COMMITS.inc()
            except KafkaException as exc:
                log.warning("event=commit_on_revoke_failed error=%s", exc)
        for tp in gone:
            self._uncommitted.pop(tp, None)
        log.info("event=partitions_revoked partitions=%s", fmt_partitions(partitions))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in self._drop(partitions):
            self._uncommitted.pop(tp, None)
        log.warning("event=partitions_lost partitions=%s", fmt_partitions(partitions))

    def _update_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_S:
            return
        self._lag_at = now
        metrics.record_lag(self.consumer)
