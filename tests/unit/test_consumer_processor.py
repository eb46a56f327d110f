"""The batch processor against the in-memory twins: exactly-once effects, outages, rebuild equality."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import orjson
import pytest
from pymongo.errors import AutoReconnect
from redis.exceptions import ConnectionError as RedisConnectionError

from consumer.batch import RawMessage, event_document
from consumer.processor import BatchProcessor, InMemoryDeadLetterSink, SinkUnavailable
from consumer.rebuild import diff_snapshots, rebuild_cache
from core.events import parse_interaction
from core.settings import ConsumerSettings, KafkaSettings, KafkaTopics, Settings
from storage.event_store_memory import InMemoryEventStore
from storage.impressions import InMemoryImpressionStore
from storage.realtime_state import InMemoryRealtimeState

NOW_S = 1_714_564_800.0  # 2024-05-01T12:00Z
NOW = datetime.fromtimestamp(NOW_S, tz=UTC)


def make_settings(recent_max: int = 5) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka=KafkaSettings(topics=KafkaTopics(events="ev", items="it", dead_letter="dl", impressions="im")),
        consumer=ConsumerSettings(recent_max=recent_max),
    )


class Rig:
    def __init__(self, recent_max: int = 5) -> None:
        self.settings = make_settings(recent_max)
        self.store = InMemoryEventStore()
        self.state = InMemoryRealtimeState("sr:")
        self.state.finish_rebuild("g0", {})  # an established Redis (the empty one has its own tests)
        self.dlq = InMemoryDeadLetterSink()
        self.impressions = InMemoryImpressionStore()
        self.proc = BatchProcessor(
            self.settings, self.store, self.state, self.dlq, clock=lambda: NOW_S, impressions=self.impressions
        )


def ev(
    eid: str, offset: int, *, user: str = "u1", item: str = "i1", etype: str = "view", age_s: float = 60, p=0
):
    body = {
        "event_id": eid,
        "event_type": etype,
        "user_id": user,
        "item_id": item,
        "timestamp": int((NOW_S - age_s) * 1000),
    }
    if etype == "rate":
        body["value"] = 4
    return RawMessage("ev", p, offset, user.encode(), orjson.dumps(body))


def item(iid: str, offset: int, **fields) -> RawMessage:
    return RawMessage("it", 0, offset, iid.encode(), orjson.dumps({"item_id": iid, **fields}))


def test_batch_stores_events_and_dead_letters_bad_ones():
    rig = Rig()
    out = rig.proc.process([ev("e1", 0), RawMessage("ev", 0, 1, b"u", b"{oops"), ev("e1", 2), ev("e2", 3)])
    assert set(rig.store.events) == {"e1", "e2"}
    assert rig.store.events["e1"]["src"] == {"topic": "ev", "partition": 0, "offset": 0}
    assert len(rig.dlq.records) == 1 and rig.dlq.records[0][1] == b"{oops"
    assert dict(rig.dlq.records[0][2])["error_code"] == b"bad_json"
    assert out.counts[("view", "stored")] == 2
    assert out.counts[("view", "duplicate")] == 1
    assert out.counts[("event", "dead_lettered")] == 1
    assert out.commit == {("ev", 0): 4}
    assert rig.state.applied_offsets([("ev", 0)]) == {("ev", 0): 3}
    assert rig.state.snapshot(NOW_S)["seen"] == {"u1": ["i1"]}


def test_redelivered_batch_after_commit_loss_changes_nothing():
    rig = Rig()
    batch = [ev("e1", 0), ev("e2", 1, etype="purchase"), RawMessage("ev", 0, 2, None, b"{}")]
    rig.proc.process(batch)
    before, marker, dlq = rig.state.snapshot(NOW_S), rig.state.marker("u1"), len(rig.dlq.records)
    out = rig.proc.process(batch)  # crash after Redis, before the Kafka commit
    assert rig.state.snapshot(NOW_S) == before
    assert rig.state.marker("u1") == marker
    assert len(rig.dlq.records) == dlq
    assert out.counts[("view", "redelivered")] == 1


def test_redis_outage_after_mongo_write_applies_effects_once_on_retry():
    rig = Rig()
    rig.state.fail_with = RedisConnectionError("down")
    with pytest.raises(SinkUnavailable) as err:
        rig.proc.process([ev("e1", 0)])
    assert err.value.sink == "redis"
    # MongoDB stored e1 before Redis was read; e2 stands for a record stored by an earlier attempt.
    e2 = ev("e2", 1, item="i2")
    rig.store.insert_events([event_document(e2, parse_interaction(e2.value or b""), NOW)])  # type: ignore[arg-type]
    rig.state.fail_with = None
    rig.proc.process([ev("e1", 0), e2])
    snap = rig.state.snapshot(NOW_S)
    assert snap["pop"]["all"] == {"i1": 1.0, "i2": 1.0}
    assert len(snap["recent"]["u1"]) == 2


def test_mongo_outage_is_reported_as_mongo():
    rig = Rig()
    rig.store.fail_with = AutoReconnect("connection refused")
    with pytest.raises(SinkUnavailable) as err:
        rig.proc.process([ev("e1", 0)])
    assert err.value.sink == "mongo"
    assert rig.state.transactions == 0


def test_same_event_id_from_another_record_is_skipped_across_batches():
    rig = Rig()
    rig.proc.process([ev("e1", 0)])
    out = rig.proc.process([ev("e1", 1)])
    assert out.counts[("view", "duplicate")] == 1
    assert rig.state.snapshot(NOW_S)["pop"]["all"] == {"i1": 1.0}
    assert rig.state.applied_offsets([("ev", 0)])[("ev", 0)] == 1


def test_item_updates_upsert_partially_and_mirror():
    rig = Rig()
    rig.proc.process(
        [item("i1", 0, title="Mug", category="kitchen", price=2.0), item("i1", 1, available=False)]
    )
    rig.proc.process([item("i1", 2, category="garden")])
    stored = rig.store.get_items(["i1"])["i1"]
    assert {k: stored[k] for k in ("title", "category", "price", "available")} == {
        "title": "Mug",
        "category": "garden",
        "price": 2.0,
        "available": False,
    }
    snap = rig.state.snapshot(NOW_S)
    assert snap["categories"] == {"garden": ["i1"]}
    assert snap["unavailable"] == ["i1"]


def test_live_state_equals_rebuild_after_random_batches_with_redeliveries():
    rng = random.Random(7)
    rig = Rig(recent_max=4)
    records: list[RawMessage] = []
    offsets = {0: 0, 1: 0, "it": 0}
    for n in range(400):
        if rng.random() < 0.1:
            iid = f"i{rng.randrange(20)}"
            records.append(item(iid, offsets["it"], category=rng.choice("abc"), available=rng.random() < 0.8))
            offsets["it"] += 1
            continue
        p = rng.randrange(2)
        eid = f"e{n}" if rng.random() > 0.05 else f"e{rng.randrange(max(1, n))}"
        records.append(
            RawMessage(
                "ev",
                p,
                offsets[p],
                b"k",
                orjson.dumps(
                    {
                        "event_id": eid,
                        "event_type": rng.choice(["view", "click", "purchase", "rate", "favorite"]),
                        "user_id": f"u{rng.randrange(15)}",
                        "item_id": f"i{rng.randrange(20)}",
                        "timestamp": int((NOW_S - rng.uniform(0, 10 * 86400)) * 1000),
                        "value": rng.choice([1, 2.5, 5]),
                    }
                ),
            )
        )
        offsets[p] += 1
    pos = 0
    while pos < len(records):
        size = rng.randint(1, 40)
        rig.proc.process(records[pos : pos + size])
        if rng.random() < 0.3:  # crash before commit: the same records again, maybe a longer batch
            rig.proc.process(records[pos : pos + size + rng.randint(0, 10)])
        pos += size
    rebuilt = InMemoryRealtimeState("rb:")
    stats = rebuild_cache(rig.settings, rig.store, rebuilt, now_s=NOW_S, batch_size=37)
    assert stats.events == len(rig.store.events)
    assert diff_snapshots(rig.state.snapshot(NOW_S), rebuilt.snapshot(NOW_S)) == []
    assert rig.state.snapshot(NOW_S)["pop"]["7d"]
    # Rebuilding on the live prefix gives the same state and keeps markers growing.
    markers = {u: rig.state.marker(u) for u in ("u1", "u2")}
    rebuild_cache(rig.settings, rig.store, rig.state, now_s=NOW_S)
    assert diff_snapshots(rig.state.snapshot(NOW_S), rebuilt.snapshot(NOW_S)) == []
    assert all(rig.state.marker(u) > m for u, m in markers.items())


def test_erase_user_in_both_twins():
    rig = Rig()
    rig.proc.process([ev("e1", 0), ev("e2", 1, user="u2")])
    rig.state.hashes[rig.state.keys.recs_cache("u1")] = {"k=10": "{}"}
    assert rig.store.erase_user("u1") == 1
    assert rig.store.erased_users() == {"u1"}
    assert rig.state.erase_user("u1") == 4  # recent, seen, marker, cached result
    assert "u1" not in rig.state.snapshot(NOW_S)["recent"]
    assert [d["event_id"] for b in rig.store.iter_events(exclude_users={"u2"}) for d in b] == []
