"""Batch classification, duplicate rules, dead-letter headers, offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson

from consumer.batch import (
    DeadLetter,
    Outcome,
    RawMessage,
    advanced_applied,
    classify,
    dead_letter_headers,
    decide_events,
    event_document,
    next_offsets,
)
from core.settings import KafkaTopics

TOPICS = KafkaTopics(events="ev", items="it", dead_letter="dl")
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def event_bytes(eid: str = "e1", **over) -> bytes:
    body = {
        "event_id": eid,
        "event_type": "view",
        "user_id": "u1",
        "item_id": "i1",
        "timestamp": "2024-05-01T11:00:00Z",
    }
    body.update(over)
    return orjson.dumps(body)


def msg(
    value: bytes | None, offset: int = 0, key: bytes | None = b"u1", topic: str = "ev", partition: int = 0
):
    return RawMessage(topic, partition, offset, key, value)


def codes(batch) -> list[str]:
    return [d.code for d in batch.dead_letters]


def test_valid_event_and_item_are_classified():
    batch = classify(
        [msg(event_bytes()), msg(b'{"item_id":"i1","title":"x"}', topic="it", key=b"i1")], TOPICS, NOW
    )
    assert [e.event_id for _, e in batch.events] == ["e1"]
    assert [u.item_id for _, u in batch.items] == ["i1"]
    assert batch.dead_letters == []


def test_each_kind_of_bad_input_is_dead_lettered_with_its_code():
    future = (NOW + timedelta(days=3)).isoformat()
    bad = [
        msg(b"{not json", 0),
        msg(b"\xff\xfe\x00", 1),
        msg(orjson.dumps({"event_id": "x", "event_type": "view", "user_id": "u"}), 2),
        msg(event_bytes(user_id=7), 3),
        msg(event_bytes(event_type="teleport"), 4),
        msg(b'{"a":"' + b"x" * 1_000_000 + b'"}', 5),
        msg(event_bytes(), 6, key=b""),
        msg(event_bytes(), 7, key=None),
        msg(event_bytes(timestamp=future), 8),
        msg(None, 9),
        msg(b'{"item_id": 5}', 10, topic="it", key=b"i"),
    ]
    batch = classify(bad, TOPICS, NOW)
    assert codes(batch) == [
        "bad_json",
        "not_utf8",
        "missing_field",
        "wrong_type",
        "unknown_event_type",
        "oversized",
        "missing_key",
        "missing_key",
        "future_timestamp",
        "missing_value",
        "wrong_type",
    ]
    assert batch.events == []
    assert all(d.reason for d in batch.dead_letters)


def test_first_occurrence_in_batch_wins():
    batch = classify([msg(event_bytes("e1"), 0), msg(event_bytes("e1", item_id="i9"), 1)], TOPICS, NOW)
    assert [(m.offset, e.item_id) for m, e in batch.events] == [(0, "i1")]
    assert [m.offset for m, _ in batch.batch_duplicates] == [1]


def _events(*specs):
    batch = classify([msg(event_bytes(eid), off, partition=p) for eid, off, p in specs], TOPICS, NOW)
    return batch.events


def test_duplicate_rules():
    events = _events(("new", 10, 0), ("redo_fresh", 11, 0), ("redo_done", 5, 1), ("twin", 12, 0))
    stored_src = {
        "redo_fresh": {"topic": "ev", "partition": 0, "offset": 11},
        "redo_done": {"topic": "ev", "partition": 1, "offset": 5},
        "twin": {"topic": "ev", "partition": 0, "offset": 3},
    }
    applied = {("ev", 0): 9, ("ev", 1): 7}
    decided = {
        e.event_id: (o, apply) for _, e, o, apply in decide_events(events, {"new"}, stored_src, applied)
    }
    assert decided == {
        "new": (Outcome.STORED, True),
        "redo_fresh": (Outcome.REDELIVERED, True),
        "redo_done": (Outcome.REDELIVERED, False),
        "twin": (Outcome.DUPLICATE, False),
    }


def test_stored_document_shape():
    m = msg(event_bytes(value=None, session_id="s1", properties={"page": "home"}), 42, partition=3)
    batch = classify([m], TOPICS, NOW)
    doc = event_document(m, batch.events[0][1], NOW)
    assert doc["_id"] == "e1"
    assert doc["ts"] == datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert doc["ts_ms"] == int(doc["ts"].timestamp() * 1000)
    assert doc["src"] == {"topic": "ev", "partition": 3, "offset": 42}
    assert doc["session_id"] == "s1" and doc["properties"] == {"page": "home"} and doc["ingested_at"] == NOW
    assert set(doc) >= {"user_id", "item_id", "event_type", "value"}


def test_dead_letter_headers():
    dl = DeadLetter(msg(b"x", 7, partition=2), "bad_json", "payload is not valid JSON")
    headers = dict(dead_letter_headers(dl, NOW))
    assert headers == {
        "reason": b"payload is not valid JSON",
        "error_code": b"bad_json",
        "source_topic": b"ev",
        "source_partition": b"2",
        "source_offset": b"7",
        "failed_at": NOW.isoformat().encode(),
    }


def test_offsets_to_commit_and_applied_only_move_forward():
    batch = [msg(b"", 4), msg(b"", 9), msg(b"", 2, partition=1)]
    assert next_offsets(batch) == {("ev", 0): 10, ("ev", 1): 3}
    assert advanced_applied(batch, {("ev", 0): 20, ("ev", 1): -1}) == {("ev", 1): 2}
