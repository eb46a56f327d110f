"""Whatever the parser accepts, BSON can encode: the schema rejects what MongoDB/Redis cannot hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import bson
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.batch import RawMessage, event_document
from core.events import (
    InteractionEvent,
    ItemUpdate,
    ParseError,
    parse_interaction,
    parse_item_update,
    validate_interaction,
    validate_item_update,
)

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
BASE: dict[str, Any] = {
    "event_id": "e1",
    "event_type": "click",
    "user_id": "pu1",
    "item_id": "i1",
    "timestamp": int(NOW.timestamp() * 1000) - 60_000,
}


def code_of(result: object) -> str:
    return result.code if isinstance(result, ParseError) else "ok"


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"properties": {"a\x00b": 1}}, "invalid_key"),
        ({"properties": {"n": 18446744073709551615}}, "integer_out_of_range"),
        ({"properties": {"n": -(2**63) - 1}}, "integer_out_of_range"),
        ({"properties": {"$where": 1}}, "invalid_key"),
        ({"properties": {"a.b": 1}}, "invalid_key"),
        ({"properties": {"a\nb": 1}}, "invalid_key"),
        ({"properties": {"s": "\ud800"}}, "invalid_unicode"),
        ({"properties": {"\udfff": 1}}, "invalid_unicode"),
        ({"user_id": "p\x00u"}, "control_character"),
        ({"user_id": "line\nbreak"}, "control_character"),
        ({"event_id": "e\x7f"}, "control_character"),
        ({"item_id": "i\x85"}, "control_character"),
        ({"session_id": "s\u2028"}, "control_character"),
        ({"user_id": "u\ud800"}, "invalid_unicode"),
        ({"value": 2**64}, "integer_out_of_range"),
        ({"timestamp": 2**63}, "integer_out_of_range"),
        ({"unknown\x00": 1}, "invalid_key"),  # any key anywhere, not only known fields
        ({"deep": [[[[[[[[[[1]]]]]]]]]]}, "too_deep"),
        ({"big": list(range(10_000))}, "oversized"),
    ],
)
def test_unstorable_events_get_their_own_code(override: dict[str, Any], code: str) -> None:
    result = validate_interaction({**BASE, **override}, now=NOW)
    assert code_of(result) == code, result
    assert isinstance(result, ParseError)
    result.reason.encode("utf-8")  # the reason travels in a Kafka header: it must encode
    assert "\n" not in result.reason and "\x00" not in result.reason


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"item_id": "i\x00"}, "control_character"),
        ({"category": "shoes\r\n"}, "control_character"),
        ({"properties": {"$set": 1}}, "invalid_key"),
        ({"price": 2**63}, "integer_out_of_range"),
        ({"title": "\udc80"}, "invalid_unicode"),
    ],
)
def test_unstorable_item_updates_get_their_own_code(override: dict[str, Any], code: str) -> None:
    assert code_of(validate_item_update({"item_id": "i1", **override})) == code


def test_the_issue_records_over_the_wire() -> None:
    """The six records of issue #10: 1 and 6 parse, 2-5 are rejected with a reason code."""
    raw = [
        orjson.dumps(BASE),
        b'{"event_id":"e2","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1,'
        b'"properties":{"a\\u0000b":1}}',
        b'{"event_id":"e3","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1,'
        b'"properties":{"n":18446744073709551615}}',
        b'{"event_id":"e4","event_type":"click","user_id":"pu1","item_id":"i1","timestamp":1,'
        b'"properties":{"$where":"1"}}',
        b'{"event_id":"e5","event_type":"click","user_id":"p\\u0000u1","item_id":"i1","timestamp":1}',
        orjson.dumps({**BASE, "event_id": "e6"}),
    ]
    codes = [code_of(parse_interaction(r, now=NOW)) for r in raw]
    assert codes == ["ok", "invalid_key", "integer_out_of_range", "invalid_key", "control_character", "ok"]


def test_clean_values_still_pass() -> None:
    ok = {
        **BASE,
        "user_id": "ユーザー 42",
        "session_id": "s-1",
        "value": 2**62,
        "properties": {"ключ": "значение 😀", "n": 2**63 - 1, "m": -(2**63), "f": 1.5, "b": True, "x": None},
    }
    assert isinstance(validate_interaction(ok, now=NOW), InteractionEvent)
    item = {"item_id": "i 1", "category": "a/b", "title": "x\x00y"}
    assert isinstance(validate_item_update(item), ItemUpdate)


def _encodes(event: InteractionEvent) -> None:
    msg = RawMessage("ev", 0, 7, b"k", event.to_json())
    doc = event_document(msg, event, NOW)
    back = bson.decode(bson.encode(doc))
    assert back["_id"] == event.event_id
    assert back["properties"] == event.properties
    assert back["user_id"] == event.user_id
    # What is stored comes back identical when produced again (the replay / dead-letter path).
    again = parse_interaction(event.to_json(), now=NOW)
    assert again == event


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)
nasty_text = st.sampled_from(["", " ", "\x00", "a\x00b", "$x", "a.b", "\n", "\x7f", "\x9f", "\ud800", "ok"])
field_values = json_values | nasty_text | st.integers(min_value=2**63 - 2, max_value=2**64 + 2)
FIELDS = [*BASE, "session_id", "value", "properties"]


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = dict(BASE)
    clean_keys = st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=5)
    clean = st.dictionaries(clean_keys, json_scalars)
    nasty = st.dictionaries(st.text(max_size=5) | nasty_text, field_values, max_size=3)
    body["properties"] = draw(clean | nasty)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 3]))):
        body[draw(st.sampled_from(FIELDS) | nasty_text)] = draw(field_values)
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_events())
def test_anything_accepted_from_a_decoded_object_is_storable(body: dict[str, Any]) -> None:
    result = validate_interaction(body, now=NOW)
    if isinstance(result, InteractionEvent):
        _encodes(result)
    else:
        result.reason.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | mutated_events().map(lambda b: json.dumps(b).encode()))
def test_parse_interaction_never_raises_and_accepts_only_storable(raw: bytes) -> None:
    result = parse_interaction(raw, now=NOW)
    if isinstance(result, InteractionEvent):
        _encodes(result)


ITEM_FIELDS = st.sampled_from(["item_id", "title", "category", "price", "properties"])


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(ITEM_FIELDS, field_values))
def test_accepted_item_updates_encode(body: dict[str, Any]) -> None:
    result = validate_item_update(body)
    if isinstance(result, ItemUpdate):
        bson.encode({"_id": result.item_id, **result.model_dump(exclude_none=True)})
        parse_item_update(result.to_json())


def test_http_ingest_rejects_unstorable_events_one_by_one() -> None:
    """POST /v1/events shares the validator: a 202 with a per-event error code for each bad event."""
    from tests.unit.test_serving_api import event
    from tests.unit.test_serving_helpers import INGEST, harness

    bad = [
        event(2, properties={"a\x00b": 1}),
        event(3, properties={"n": 18446744073709551615}),
        event(4, properties={"$where": "1"}),
        event(5, user="p\x00u1"),
        event(6, user="u\nFAKE log line"),
        event(7, properties={"deep": 1}, extra=[[[[[[[[[1]]]]]]]]]),
    ]
    with harness() as h:
        resp = h.client.post("/v1/events", json=[event(1), *bad, event(8)], headers={"X-API-Key": INGEST})
        assert resp.status_code == 202, resp.text
        body = resp.json()
        assert body["accepted"] == 2
        assert [(e["index"], e["code"]) for e in body["errors"]] == [
            (1, "invalid_key"),
            (2, "integer_out_of_range"),
            (3, "invalid_key"),
            (4, "control_character"),
            (5, "control_character"),
            (6, "too_deep"),
        ]
        assert len(h.producer.messages) == 2
        # A lone surrogate escaped in the JSON body: the whole body is refused with a 4xx (today
        # FastAPI's body parsing answers 422 before the validator sees it), never a 5xx or a 202.
        lone = orjson.dumps([event(9)]).replace(b'"u1"', b'"u\\ud800"')
        resp = h.client.post("/v1/events", content=lone, headers={"X-API-Key": INGEST})
        assert 400 <= resp.status_code < 500, resp.text
        assert len(h.producer.messages) == 2


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=4) | nasty_text, field_values, max_size=6))
def test_scan_fast_path_agrees_with_the_full_walk(body: dict[str, Any]) -> None:
    from core import storable

    assert (storable.scan(body) is None) == (storable.walk(body) is None)


def test_http_item_update_rejects_unstorable_fields() -> None:
    from tests.unit.test_serving_helpers import ADMIN, harness

    with harness() as h:
        auth = {"X-API-Key": ADMIN}
        cases = [
            ("/v1/items/books-1", {"properties": {"$set": 1}}, "invalid_key"),
            ("/v1/items/books-1", {"category": "a\nb"}, "control_character"),
            ("/v1/items/bad%01id", {"title": "x"}, "control_character"),
        ]
        for path, body, code in cases:
            resp = h.client.put(path, json=body, headers=auth)
            assert resp.status_code == 422, (path, body, resp.text)
            assert resp.json()["error"]["code"] == code, (path, body, resp.text)
        assert h.producer.messages == []


def test_reasons_quote_unknown_field_names_on_one_line() -> None:
    result = validate_interaction({**BASE, "evil\nkey\u2028x": 1}, now=NOW)
    assert isinstance(result, ParseError) and result.code == "invalid_value"
    assert "\n" not in result.reason and "\u2028" not in result.reason
    assert "evil\\nkey\\u2028x" in result.reason
