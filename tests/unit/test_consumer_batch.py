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
    event_document,
    next_offsets,
    settle_events,
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


def _stored(m: RawMessage, src_offset: int, **over) -> dict:
    """The document MongoDB would hold for ``m``'s event, first read at ``src_offset``."""
    event = classify([m], TOPICS, NOW).events[0][1]
    doc = event_document(RawMessage(m.topic, m.partition, src_offset, m.key, m.value), event, NOW)
    return {**doc, **over}


def _settle(messages, inserted=(), stored=None, rejected=None, applied=None):
    batch = classify(messages, TOPICS, NOW)
    docs = {e.event_id: event_document(m, e, NOW) for m, e in batch.events}
    return settle_events(batch, docs, set(inserted), stored or {}, rejected or {}, applied or {})


def test_duplicate_rules():
    new, fresh, done, twin = (
        msg(event_bytes("new"), 10),
        msg(event_bytes("redo_fresh"), 11),
        msg(event_bytes("redo_done"), 5, partition=1),
        msg(event_bytes("twin"), 12),
    )
    stored = {"redo_fresh": _stored(fresh, 11), "redo_done": _stored(done, 5), "twin": _stored(twin, 3)}
    applied = {("ev", 0): 9, ("ev", 1): 7}
    settled = _settle([new, fresh, done, twin], {"new"}, stored, applied=applied)
    decided = {e.event_id: (o, apply) for _, e, o, apply in settled.decisions}
    assert decided == {
        "new": (Outcome.STORED, True),
        "redo_fresh": (Outcome.REDELIVERED, True),
        "redo_done": (Outcome.REDELIVERED, False),
        "twin": (Outcome.DUPLICATE, False),
    }
    assert settled.dead_letters == [] and settled.duplicates == []


def test_reused_event_id_with_other_content_is_a_conflicting_duplicate():
    m = msg(event_bytes("e1", item_id="i2"), 7)
    stored = {"e1": _stored(msg(event_bytes("e1"), 0), 0)}  # same id, item i1, from offset 0
    settled = _settle([m], stored=stored)
    assert settled.decisions == []
    [dl] = settled.dead_letters
    assert (dl.code, dl.message.offset) == ("conflicting_duplicate", 7)
    assert "already stored with different content" in dl.reason and "@0" in dl.reason


def test_every_content_field_counts_and_types_are_kept():
    base = {"properties": {"n": 1}, "session_id": "s", "value": 2.5}
    first = msg(event_bytes("e1", **base), 0)
    for change in (
        {"user_id": "u2"},
        {"event_type": "click"},
        {"timestamp": "2024-05-01T10:59:00.001Z"},
        {"value": 3.0},
        {"session_id": "s2"},
        {"properties": {"n": 1.0}},  # 1 and 1.0 are different JSON
        {"properties": {"n": True}},
        {"properties": None},
    ):
        again = msg(event_bytes("e1", **{**base, **change}), 1)
        settled = _settle([again], stored={"e1": _stored(first, 0)})
        assert [d.code for d in settled.dead_letters] == ["conflicting_duplicate"], change
    same = msg(event_bytes("e1", **base), 1)
    assert _settle([same], stored={"e1": _stored(first, 0)}).decisions[0][2] is Outcome.DUPLICATE


def test_same_offset_with_other_content_is_not_a_redelivery():
    """A recreated topic (a broker that lost its data) reuses offsets: the content decides."""
    m = msg(event_bytes("e1", item_id="i2"), 0)
    settled = _settle([m], stored={"e1": _stored(msg(event_bytes("e1"), 0), 0)})
    assert [d.code for d in settled.dead_letters] == ["conflicting_duplicate"]


def test_in_batch_duplicates_identical_or_conflicting():
    first = msg(event_bytes("e1"), 0)
    same = msg(event_bytes("e1"), 1)
    other = msg(event_bytes("e1", item_id="i9"), 2)
    settled = _settle([first, same, other], inserted={"e1"})
    assert [(m.offset, o) for m, _, o, _ in settled.decisions] == [(0, Outcome.STORED)]
    assert [m.offset for m, _ in settled.duplicates] == [1]
    [dl] = settled.dead_letters
    assert (dl.message.offset, dl.code) == (2, "conflicting_duplicate")
    assert "earlier in the batch" in dl.reason


def test_unstorable_event_and_its_identical_copies_are_dead_lettered():
    first, copy, other = (
        msg(event_bytes("e1"), 0),
        msg(event_bytes("e1"), 1),
        msg(event_bytes("e1", item_id="i9"), 2),
    )
    settled = _settle([first, copy, other], rejected={"e1": "InvalidDocument: nope"})
    assert settled.decisions == [] and settled.duplicates == []
    codes = [(d.message.offset, d.code) for d in settled.dead_letters]
    assert codes == [(0, "unstorable"), (1, "unstorable"), (2, "conflicting_duplicate")]
    assert "InvalidDocument: nope" in settled.dead_letters[0].reason


def test_dead_letter_headers_encode_any_reason():
    dl = DeadLetter(msg(b"x", 3), "bad_json", "lone \udc80 surrogate, NUL \x00")
    headers = dict(dead_letter_headers(dl, NOW))
    assert headers["error_code"] == b"bad_json"
    assert headers["reason"] == b"lone \\udc80 surrogate, NUL \x00"


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


def test_impressions_are_parsed_and_bad_ones_dead_lettered_with_their_code():
    topics = KafkaTopics(events="ev", items="it", dead_letter="dl", impressions="im")
    good = orjson.dumps(
        {
            "impression_id": "r1",
            "request_id": "r1",
            "user_id": "u1",
            "surface": "similar",
            "items": [{"item_id": "i1", "position": 0}],
            "ts": "2024-05-01T11:59:00Z",
        }
    )
    batch = classify(
        [
            msg(good, 0, topic="im"),
            msg(b'{"impression_id": "r2"}', 1, topic="im"),
            msg(b"[1]", 2, topic="im"),
            msg(good, 3, topic="im", key=None),
            msg(good, 4, topic="elsewhere"),
        ],
        topics,
        NOW,
    )
    assert [(m.offset, i.impression_id, i.surface) for m, i in batch.impressions] == [(0, "r1", "similar")]
    assert codes(batch) == ["invalid_value", "not_object", "missing_key", "unknown_topic"]
    assert batch.events == [] and batch.items == []
