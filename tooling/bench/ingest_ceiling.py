"""`bench ingest`'s two ceilings, each run in a process of its own (started by the bench):

    python -m tooling.bench.ingest_ceiling parse|sink --group G --events N --out result.json

Both read the run's events topic from the start as a consumer with the product's consumer settings
(``storage.kafka.consumer_config``, its own group id) in batches cut as the consumer cuts them
(``consume(batch_size, batch_wait_s)``), until ``--events`` records are read.

- ``parse``: consume + ``orjson.loads`` of every value, nothing else: what Kafka and JSON allow.
- ``sink``: consume + parse, then per batch one unordered ``insert_many`` into MongoDB of the
  documents the consumer stores (a scratch database with the product's indexes), one Redis pipeline
  with per-event writes like the full path's (recent list, seen set, all-time popularity) and a
  synchronous offset commit. No validation, no storability checks, no attribution, no duplicate
  handling, no guard, no plans: strictly less of the work the consumer does per batch, on the same
  sinks.

Settings come from the environment the bench hands over (``STREAMREC_*``). The result (events,
seconds from the first record to the last batch done, this process's own CPU) is written as JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.settings import Settings


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class SinkWriter:
    """The bare sink work for one batch of parsed events."""

    def __init__(self, settings: Settings, database: str, prefix: str) -> None:
        import pymongo

        from storage.event_store import MongoEventStore
        from storage.realtime_state import make_redis

        self.client: pymongo.MongoClient[Any] = pymongo.MongoClient(settings.mongo.uri.get_secret_value())
        store = MongoEventStore(self.client[database])
        store.ensure_indexes()  # the full path's indexes: every insert pays for them there too
        self.events = store.events
        self.redis = make_redis(settings.redis)
        self.prefix = prefix

    def warm(self) -> None:
        """Open the connections before the clock starts (the consumer's are open by then too)."""
        self.events.find_one({"_id": None})
        self.redis.ping()

    def write(self, records: list[tuple[str, int, int, dict[str, Any]]]) -> None:
        from pymongo.errors import BulkWriteError

        now = datetime.now(UTC)
        # The document the consumer stores (consumer.batch.event_document), built without validation:
        # the same insert work on MongoDB, so the ratio measures the consumer, not the documents.
        docs = [
            {
                "_id": e.get("event_id"),
                "user_id": e.get("user_id"),
                "item_id": e.get("item_id"),
                "event_type": e.get("event_type"),
                "ts": datetime.fromtimestamp(int(e.get("timestamp", 0)) / 1000, tz=UTC),
                "ts_ms": e.get("timestamp"),
                "value": e.get("value"),
                "session_id": e.get("session_id"),
                "properties": e.get("properties"),
                "recommendation_id": e.get("recommendation_id"),
                "position": e.get("position"),
                "src": {"topic": topic, "partition": partition, "offset": offset},
                "ingested_at": now,
            }
            for topic, partition, offset, e in records
        ]
        try:
            self.events.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Only an id stored already (code 11000) is tolerated; anything else fails the ceiling.
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
        pipe = self.redis.pipeline(transaction=False)
        p = self.prefix
        for _topic, _partition, _offset, e in records:
            user, item = e.get("user_id"), e.get("item_id")
            pipe.zadd(f"{p}user:{user}:recent", {f"{e.get('event_id')}|{item}": e.get("timestamp", 0)})
            pipe.sadd(f"{p}user:{user}:seen", str(item))
            pipe.zincrby(f"{p}pop:all", 1.0, str(item))
        pipe.execute()

    def close(self) -> None:
        self.client.close()
        self.redis.close()


def scratch_names(settings: Settings, tag: str = "") -> tuple[str, str]:
    """The sink ceiling's own database and Redis key prefix (``tag`` tells repeated runs apart)."""
    return f"{settings.mongo.database}_ceiling{tag}", f"{settings.redis.key_prefix}ceiling{tag}:"


def run(
    mode: str, settings: Settings, *, group: str, events: int, timeout_s: float, tag: str = ""
) -> dict[str, Any]:
    from confluent_kafka import TopicPartition

    from storage.kafka import make_consumer, wait_for_assignment

    topic = settings.kafka.topics.events
    batch_size, wait_s = settings.consumer.batch_size, settings.consumer.batch_wait_s
    sink = SinkWriter(settings, *scratch_names(settings, tag)) if mode == "sink" else None
    consumer = make_consumer(settings.kafka, group_id=group)
    seen = batches = 0
    started: float | None = None
    cpu_start = 0.0
    try:
        consumer.subscribe([topic])
        wait_for_assignment(consumer, timeout_s=60)
        if sink is not None:
            sink.warm()
        deadline = time.monotonic() + timeout_s
        while seen < events and time.monotonic() < deadline:
            msgs = consumer.consume(batch_size, wait_s)
            records = [m for m in msgs if m.error() is None]
            if not records:
                continue
            if started is None:
                # The clock starts at the first batch: joining the group is not the consumer's work.
                started, cpu_start = time.monotonic(), _cpu_s()
            parsed = [orjson.loads(m.value() or b"null") for m in records]
            if sink is not None:
                sink.write(
                    [
                        (str(m.topic()), int(m.partition() or 0), int(m.offset() or 0), p)
                        for m, p in zip(records, parsed, strict=True)
                        if isinstance(p, dict)
                    ]
                )
                # As the consumer does: the next offset of each partition, stored by nobody else.
                last: dict[tuple[str, int], int] = {}
                for m in records:
                    last[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
                offsets = [TopicPartition(t, p, o) for (t, p), o in last.items()]
                consumer.commit(offsets=offsets, asynchronous=False)
            seen += len(records)
            batches += 1
        elapsed = time.monotonic() - (started or time.monotonic())
        cpu = _cpu_s() - cpu_start
    finally:
        consumer.close()
        if sink is not None:
            sink.close()
    return {
        "mode": mode,
        "events": seen,
        "complete": seen >= events,
        "batches": batches,
        "seconds": round(elapsed, 3),
        "events_per_s": round(seen / elapsed, 1) if elapsed > 0 else None,
        "cpu_us_per_event": round(cpu * 1e6 / seen, 1) if seen else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tooling.bench.ingest_ceiling")
    parser.add_argument("mode", choices=("parse", "sink"))
    parser.add_argument("--group", required=True, help="Consumer group of this ceiling (its own).")
    parser.add_argument("--events", type=int, required=True, help="Records to read before stopping.")
    parser.add_argument("--out", type=Path, required=True, help="Where to write the JSON result.")
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--tag", default="", help="Suffix of the sink's scratch database and key prefix.")
    args = parser.parse_args(argv)
    settings = Settings()
    result = run(
        args.mode, settings, group=args.group, events=args.events, timeout_s=args.timeout_s, tag=args.tag
    )
    args.out.write_text(json.dumps(result) + "\n")
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
