"""Poison records through the real consumer on the dev servers (Tansu, SecantusDB, redis-server).

Whatever the bytes, the consumer stays alive, commits to the end of the partition, and every
record ends in exactly one place: stored in MongoDB once, or on the dead-letter topic once with a
reason code (an identical re-send of a stored event counts as stored once).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consumer.batch import RawMessage, content_key, event_document
from core.events import InteractionEvent, parse_interaction
from core.settings import Settings
from storage.kafka import flush_or_raise, make_consumer, make_producer, wait_for_assignment
from tests.integration.test_consumer_e2e import running_consumer, wait_until

ISSUE_RECORDS = [
    {"event_id": "c1"},
    {"event_id": "c2", "properties": {"a\x00b": 1}},
    {"event_id": "c3", "properties": {"n": 18446744073709551615}},
    {"event_id": "c4", "properties": {"$where": "sleep(1000)"}},
    {"event_id": "c5", "user_id": "p\x00u1"},
    {"event_id": "c6", "item_id": "i6"},
]


def click(**over: Any) -> dict[str, Any]:
    body = {
        "event_id": "e",
        "event_type": "click",
        "user_id": "pu1",
        "item_id": "i1",
        "timestamp": int(time.time() * 1000) - 60_000,
    }
    return {**body, **over}


def produce(settings: Settings, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = make_producer(settings.kafka)
    for key, value in records:
        while True:
            try:
                producer.produce(settings.kafka.topics.events, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
    flush_or_raise(producer)


def committed(settings: Settings) -> int:
    reader = make_consumer(settings.kafka)  # same group id; never subscribes, so never joins
    try:
        tp = reader.committed([TopicPartition(settings.kafka.topics.events, 0)], timeout=10)[0]
        return int(tp.offset)
    finally:
        reader.close()


def dead_letters(settings: Settings, idle_s: float = 2.0) -> list[Any]:
    reader = make_consumer(settings.kafka, group_id=f"dl-reader-{time.monotonic_ns()}")
    reader.subscribe([settings.kafka.topics.dead_letter])
    try:
        wait_for_assignment(reader, timeout_s=30)
        got: list[Any] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            batch = [m for m in reader.consume(500, 0.5) if m.error() is None]
            if batch:
                got += batch
                quiet_since = time.monotonic()
        return got
    finally:
        reader.close()


def test_the_issue_records_end_stored_or_dead_lettered(settings: Settings, kafka_topics, mongo_db) -> None:
    kafka_topics.create(settings.kafka.topics.events, partitions=1)
    records = [(b"pu1", json.dumps(click(**r)).encode()) for r in ISSUE_RECORDS]
    with running_consumer(settings) as (_runner, thread, result):
        produce(settings, records)
        wait_until(lambda: committed(settings) >= len(records), 90, "all six records committed")
        assert thread.is_alive(), result
    assert result == {"code": 0}
    assert sorted(d["_id"] for d in mongo_db["events"].find()) == ["c1", "c6"]
    dead = dead_letters(settings)
    got = sorted((int(dict(m.headers())["source_offset"]), dict(m.headers())["error_code"]) for m in dead)
    assert got == [
        (1, b"invalid_key"),
        (2, b"integer_out_of_range"),
        (3, b"invalid_key"),
        (4, b"control_character"),
    ]


def test_what_the_schema_misses_is_dead_lettered_as_unstorable(
    settings: Settings, kafka_topics, mongo_db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence, against the real server: with the storability checks switched
    off, a NUL key and a 65-bit integer reach the driver, which refuses them; the rest is stored."""
    monkeypatch.setattr("core.events.scan", lambda _data: None)
    monkeypatch.setattr("core.events.property_key_problem", lambda _key: None)
    kafka_topics.create(settings.kafka.topics.events, partitions=1)
    bodies = [
        click(event_id="ok1"),
        click(event_id="nul", properties={"a\x00b": 1}),
        click(event_id="ok2", item_id="i2"),
        click(event_id="int", properties={"n": 2**64 - 1}),
        click(event_id="ok3", item_id="i3"),
    ]
    with running_consumer(settings) as (_runner, thread, result):
        produce(settings, [(b"pu1", json.dumps(b).encode()) for b in bodies])
        wait_until(lambda: committed(settings) >= len(bodies), 90, "all records committed")
        assert thread.is_alive(), result
    assert result == {"code": 0}
    assert sorted(d["_id"] for d in mongo_db["events"].find()) == ["ok1", "ok2", "ok3"]
    dead = {int(dict(m.headers())["source_offset"]): dict(m.headers()) for m in dead_letters(settings)}
    assert sorted(dead) == [1, 3]
    assert {h["error_code"] for h in dead.values()} == {b"unstorable"}
    assert b"NUL" in dead[1]["reason"] and b"8-byte ints" in dead[3]["reason"]


# ------------------------------------------------------------------ property-based proof

NASTY_TEXT = ["", " ", "\x00", "a\x00b", "$where", "a.b", "\n", "\x7f", "\x85", "\u2028", "\ud800", "\udfff"]
nasty_values = (
    st.sampled_from(NASTY_TEXT)
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 1e308, -0.0, True, None])
    | st.recursive(st.integers() | st.text(max_size=4), lambda x: st.lists(x, max_size=2), max_leaves=30)
    | st.dictionaries(st.text(max_size=4) | st.sampled_from(NASTY_TEXT), st.integers() | st.text(max_size=3))
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda x: st.lists(x, max_size=3) | st.dictionaries(st.text(max_size=5), x, max_size=3),
    max_leaves=10,
)
FIELDS = ["event_id", "event_type", "user_id", "item_id", "timestamp", "session_id", "value", "properties"]


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    body = click(session_id="s1", properties={"page": "pdp", "n": 3})
    for _ in range(draw(st.integers(1, 2))):
        field = draw(st.sampled_from(FIELDS) | st.sampled_from(NASTY_TEXT))
        if field == "properties" and draw(st.booleans()):
            body["properties"] = {draw(st.sampled_from(NASTY_TEXT) | st.text(max_size=4)): draw(nasty_values)}
        else:
            body[field] = draw(nasty_values | json_values)
    return body


# (kind, key, payload): payload is bytes, or a JSON object whose event_id the test fills in.
records = st.one_of(
    st.tuples(st.just("bytes"), st.sampled_from([b"u", b"", None]), st.binary(max_size=200)),
    st.tuples(st.just("json"), st.just(b"u"), json_values),
    st.tuples(st.just("valid"), st.just(b"u"), st.builds(dict)),
    st.tuples(st.just("mutated"), st.just(b"u"), mutated()),
)


def generate(n: int) -> list[tuple[bytes | None, bytes]]:
    drawn: list[tuple[str, bytes | None, Any]] = []

    @hsettings(
        max_examples=max(1, n // 25),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(records, min_size=25, max_size=25))
    def collect(batch: list[tuple[str, bytes | None, Any]]) -> None:
        drawn.extend(batch)

    while len(drawn) < n:
        collect()
    out: list[tuple[bytes | None, bytes]] = []
    rng = random.Random(10)
    for i, (kind, key, payload) in enumerate(drawn[:n]):
        if kind == "bytes":
            out.append((key, payload))
            continue
        if kind == "valid":
            payload = click(item_id=f"i{i % 17}")
        if kind in ("valid", "mutated") and isinstance(payload, dict) and payload.get("event_id") == "e":
            payload["event_id"] = f"p{i}"  # unique ids, unless the mutation replaced the id
        out.append((key, json.dumps(payload).encode()))  # ensure_ascii: surrogates become \ud800 escapes
    # One of each storable-rule violation, whatever hypothesis drew this run (the assertions on codes
    # below must not depend on the draw).
    for j, over in enumerate(
        [
            {"user_id": "u\x01x"},
            {"properties": {"$where": 1}},
            {"properties": {"n": 2**64 - 1}},
            {"properties": {"a\x00b": 1}},
        ]
    ):
        out.append((b"u", json.dumps(click(event_id=f"fixed{j}", **over)).encode()))
    # Re-sends: identical copies (stored once) and reused ids with other content (conflicts).
    valid = [v for _k, v in out if parse_ok(v)]
    for value in rng.sample(valid, min(len(valid), n // 50)):
        out.append((b"u", value))
        body = json.loads(value)
        out.append((b"u", json.dumps({**body, "item_id": body["item_id"] + "-other"}).encode()))
    return out


def parse_ok(value: bytes | None) -> bool:
    return value is not None and isinstance(parse_interaction(value), InteractionEvent)


def test_arbitrary_records_end_stored_once_or_dead_lettered_once(
    settings: Settings, kafka_topics, mongo_db
) -> None:
    kafka_topics.create(settings.kafka.topics.events, partitions=1)
    sent = generate(2000)
    assert len(sent) >= 2000
    with running_consumer(settings) as (_runner, thread, result):
        produce(settings, sent)
        wait_until(lambda: committed(settings) >= len(sent), 150, f"{len(sent)} records committed")
        assert thread.is_alive(), result
    assert result == {"code": 0}
    assert committed(settings) == len(sent)

    dead_msgs = dead_letters(settings)
    dead = Counter(int(dict(m.headers())["source_offset"]) for m in dead_msgs)
    codes = Counter(dict(m.headers())["error_code"].decode() for m in dead_msgs)
    stored = {d["_id"]: d for d in mongo_db["events"].find()}
    stored_at = {d["src"]["offset"] for d in stored.values()}
    problems: list[str] = []
    identical_resends = 0
    for offset, (key, value) in enumerate(sent):
        places = []
        if offset in stored_at:
            places.append("stored")
        if dead[offset]:
            places.append(f"dead x{dead[offset]}")
        event = parse_interaction(value) if value is not None and key else None
        if offset not in stored_at and isinstance(event, InteractionEvent) and event.event_id in stored:
            doc = event_document(RawMessage("", 0, offset, key, value), event, datetime.now(UTC))
            if content_key(doc) == content_key(stored[event.event_id]):
                places.append("identical re-send")
                identical_resends += 1
        if places not in (["stored"], ["dead x1"], ["identical re-send"]):
            problems.append(f"offset {offset} {value[:120]!r}: {places or 'nowhere'}")
    assert not problems, "\n".join(problems[:20])
    assert set(dead) <= set(range(len(sent)))
    # The run exercised every path, not only one.
    seen = f"stored={len(stored)} identical={identical_resends} dead letters={dict(codes)}"
    assert len(stored) >= 200 and sum(dead.values()) >= 500 and identical_resends >= 10, seen
    new_codes = {"invalid_key", "control_character", "integer_out_of_range", "conflicting_duplicate"}
    assert new_codes | {"bad_json", "wrong_type", "missing_key"} <= set(codes), seen
