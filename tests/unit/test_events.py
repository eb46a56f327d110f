"""The event parser: every bad input becomes a ParseError with a code and a reason naming the problem."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.events import (
    EVENT_TYPES,
    MAX_EVENT_BYTES,
    MAX_PROPERTIES,
    EventType,
    InteractionEvent,
    ItemUpdate,
    ParseError,
    _to_utc,
    parse_interaction,
    parse_item_update,
    validate_interaction,
    validate_item_update,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GOOD: dict[str, Any] = {
    "event_id": "e-1",
    "event_type": "view",
    "user_id": "u-1",
    "item_id": "i-1",
    "timestamp": "2024-05-01T11:00:00Z",
}
_DROP = object()


def event(**changes: Any) -> bytes:
    data = dict(GOOD)
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return orjson.dumps(data)


_TS_PREFIX = b'{"event_id":"e","event_type":"view","user_id":"u","item_id":"i","timestamp":'

# (case id, raw payload, expected code, words the reason must contain)
BAD_INTERACTIONS: list[tuple[str, bytes, str, tuple[str, ...]]] = [
    ("truncated JSON", b'{"event_id": ', "bad_json", ("not valid JSON",)),
    ("empty payload", b"", "bad_json", ("not valid JSON",)),
    ("NaN literal", event(value=1).replace(b"1}", b"NaN}"), "bad_json", ("not valid JSON",)),
    ("latin-1 bytes", b'{"event_id":"caf\xe9"}', "not_utf8", ("UTF-8",)),
    ("JSON array", b"[1, 2]", "not_object", ("JSON object", "list")),
    ("JSON string", b'"view"', "not_object", ("JSON object", "str")),
    ("missing user_id", event(user_id=_DROP), "missing_field", ("user_id", "missing")),
    ("missing timestamp", event(timestamp=_DROP), "missing_field", ("timestamp", "missing")),
    ("empty object", b"{}", "missing_field", ("event_id", "missing")),
    ("numeric user_id", event(user_id=42), "wrong_type", ("user_id", "string")),
    ("null item_id", event(item_id=None), "wrong_type", ("item_id", "string")),
    ("string value", event(event_type="rate", value="5"), "wrong_type", ("value", "number")),
    ("boolean value", event(event_type="rate", value=True), "wrong_type", ("value", "number")),
    ("unknown event type", event(event_type="like"), "unknown_event_type", ("'like'", "purchase")),
    (
        "oversized payload",
        event(properties={"blob": "x" * MAX_EVENT_BYTES}),
        "oversized",
        (str(MAX_EVENT_BYTES), "limit"),
    ),
    ("words as timestamp", event(timestamp="yesterday"), "bad_timestamp", ("timestamp", "'yesterday'")),
    ("empty timestamp", event(timestamp=""), "bad_timestamp", ("timestamp", "ISO-8601")),
    ("boolean timestamp", event(timestamp=True), "bad_timestamp", ("timestamp", "boolean")),
    ("negative epoch", event(timestamp=-5), "bad_timestamp", ("timestamp", "non-negative")),
    ("epoch out of range", _TS_PREFIX + b"1e300}", "bad_timestamp", ("timestamp", "out of range")),
    ("huge digit string", event(timestamp="9" * 30), "bad_timestamp", ("timestamp", "out of range")),
    (
        "timestamp 2 days ahead",
        event(timestamp="2024-05-03T12:00:00Z"),
        "future_timestamp",
        ("timestamp", "future"),
    ),
    (
        "naive timestamp 25h ahead",
        event(timestamp="2024-05-02T13:00:00"),
        "future_timestamp",
        ("future",),
    ),
    ("rate without value", event(event_type="rate"), "missing_field", ("value", "rate")),
    ("blank user_id", event(user_id="   "), "invalid_value", ("user_id", "blank")),
    ("empty item_id", event(item_id=""), "invalid_value", ("item_id", "blank")),
    ("blank session_id", event(session_id=" "), "invalid_value", ("session_id", "blank")),
    ("user_id too long", event(user_id="u" * 257), "invalid_value", ("user_id", "256")),
    ("event_id too long", event(event_id="e" * 129), "invalid_value", ("event_id", "128")),
    ("nested property", event(properties={"a": {"b": 1}}), "invalid_value", ("'a'", "scalar")),
    ("list property", event(properties={"tags": [1]}), "invalid_value", ("'tags'", "scalar")),
    (
        "too many properties",
        event(properties={f"k{i}": i for i in range(MAX_PROPERTIES + 1)}),
        "invalid_value",
        (str(MAX_PROPERTIES), str(MAX_PROPERTIES + 1)),
    ),
    ("properties not an object", event(properties=[1, 2]), "invalid_value", ("properties", "object")),
    ("property value too long", event(properties={"a": "x" * 1025}), "invalid_value", ("'a'", "1024")),
    ("empty property key", event(properties={"": 1}), "invalid_value", ("property keys",)),
    ("unknown field", event(colour="red"), "invalid_value", ("unknown field", "colour")),
]


@pytest.mark.parametrize(
    ("raw", "code", "words"), [c[1:] for c in BAD_INTERACTIONS], ids=[c[0] for c in BAD_INTERACTIONS]
)
def test_bad_interaction(raw: bytes, code: str, words: tuple[str, ...]) -> None:
    result = parse_interaction(raw, now=NOW)
    assert isinstance(result, ParseError), result
    assert result.code == code, result.reason
    for word in words:
        assert word in result.reason, f"{word!r} not in {result.reason!r}"


BAD_ITEMS: list[tuple[str, bytes, str, tuple[str, ...]]] = [
    ("negative price", orjson.dumps({"item_id": "i", "price": -1}), "invalid_value", ("price", "greater")),
    ("infinite price", b'{"item_id":"i","price":1e400}', "bad_json", ("not valid JSON",)),
    ("text price", orjson.dumps({"item_id": "i", "price": "cheap"}), "wrong_type", ("price", "number")),
    ("missing item_id", orjson.dumps({"title": "Mug"}), "missing_field", ("item_id",)),
    ("numeric item_id", orjson.dumps({"item_id": 7}), "wrong_type", ("item_id", "string")),
    ("blank item_id", orjson.dumps({"item_id": " "}), "invalid_value", ("item_id", "blank")),
    ("fuzzy available", orjson.dumps({"item_id": "i", "available": "maybe"}), "wrong_type", ("available",)),
    ("empty category", orjson.dumps({"item_id": "i", "category": ""}), "invalid_value", ("category",)),
    (
        "nested property",
        orjson.dumps({"item_id": "i", "properties": {"a": {}}}),
        "invalid_value",
        ("scalar",),
    ),
    ("unknown field", orjson.dumps({"item_id": "i", "colour": 1}), "invalid_value", ("colour",)),
    ("not an object", b"[]", "not_object", ("JSON object",)),
    ("not UTF-8", b"\xff\xfe", "not_utf8", ("UTF-8",)),
]


@pytest.mark.parametrize(("raw", "code", "words"), [c[1:] for c in BAD_ITEMS], ids=[c[0] for c in BAD_ITEMS])
def test_bad_item_update(raw: bytes, code: str, words: tuple[str, ...]) -> None:
    result = parse_item_update(raw)
    assert isinstance(result, ParseError), result
    assert result.code == code, result.reason
    for word in words:
        assert word in result.reason, f"{word!r} not in {result.reason!r}"


def test_validate_rejects_non_objects_and_non_finite_numbers() -> None:
    # HTTP bodies arrive decoded; Python's json accepts NaN/Infinity, so validation must refuse them.
    assert isinstance(validate_interaction([GOOD]), ParseError)
    assert validate_interaction("x").code == "not_object"  # type: ignore[union-attr]
    rate = dict(GOOD, event_type="rate", value=float("nan"))
    assert validate_interaction(rate, now=NOW).code == "invalid_value"  # type: ignore[union-attr]
    bad_price = validate_item_update({"item_id": "i", "price": float("inf")})
    assert isinstance(bad_price, ParseError)
    assert bad_price.field == "price"
    assert validate_item_update(None).code == "not_object"  # type: ignore[union-attr]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_event_type_parses_with_iso_timestamp(event_type: str) -> None:
    extra: dict[str, Any] = {"value": 4.5} if event_type == "rate" else {}
    result = parse_interaction(event(event_type=event_type, **extra), now=NOW)
    assert isinstance(result, InteractionEvent), result
    assert result.event_type is EventType(event_type)
    assert result.timestamp == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert result.ts_ms == 1714561200000


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1714561200000, datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        (1714561200123.0, datetime(2024, 5, 1, 11, 0, 0, 123000, tzinfo=UTC)),
        ("1714561200000", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        ("2024-05-01T13:00:00+02:00", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        ("2024-05-01T11:00:00", datetime(2024, 5, 1, 11, 0, tzinfo=UTC)),
        # Up to one day ahead is clock skew, not an error.
        ("2024-05-02T11:59:00Z", datetime(2024, 5, 2, 11, 59, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(timestamp: Any, expected: datetime) -> None:
    result = parse_interaction(event(timestamp=timestamp), now=NOW)
    assert isinstance(result, InteractionEvent), result
    assert result.timestamp == expected


def test_full_event_round_trips() -> None:
    raw = event(
        event_type="rate",
        value=4,
        session_id="s-9",
        timestamp=1714561200456,
        properties={"source": "app", "pos": 3, "promo": True, "score": 0.5, "note": None},
    )
    first = parse_interaction(raw, now=NOW)
    assert isinstance(first, InteractionEvent), first
    wire = orjson.loads(first.to_json())
    assert wire["timestamp"] == 1714561200456
    assert wire["event_type"] == "rate"
    again = parse_interaction(first.to_json(), now=NOW)
    assert again == first


def test_minimal_event_round_trips_without_optional_fields() -> None:
    first = parse_interaction(event(event_type="purchase"), now=NOW)
    assert isinstance(first, InteractionEvent)
    wire = orjson.loads(first.to_json())
    assert set(wire) == {"event_id", "event_type", "user_id", "item_id", "timestamp"}
    assert parse_interaction(first.to_json(), now=NOW) == first


def test_text_input_is_accepted() -> None:
    assert isinstance(parse_interaction(event().decode(), now=NOW), InteractionEvent)


def test_future_check_uses_the_real_clock_by_default() -> None:
    tomorrow_plus = datetime.now(UTC) + timedelta(days=2)
    result = parse_interaction(event(timestamp=tomorrow_plus.isoformat()))
    assert isinstance(result, ParseError)
    assert result.code == "future_timestamp"


@pytest.mark.parametrize(
    "update",
    [
        {"item_id": "i-1"},
        {"item_id": "i-1", "title": "Blue mug", "category": "kitchen", "price": 12.5, "available": True},
        {"item_id": "i-2", "price": 0, "available": False, "properties": {"colour": "blue", "size": 2}},
        {"item_id": "i-3", "title": ""},
    ],
)
def test_item_updates_parse_and_round_trip(update: dict[str, Any]) -> None:
    first = parse_item_update(orjson.dumps(update))
    assert isinstance(first, ItemUpdate), first
    assert first.model_dump(exclude_none=True) == update
    assert parse_item_update(first.to_json()) == first


@given(
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([0, 253_402_300_799_999, 253_402_300_800_000])
)
def test_epoch_ms_fast_path_parses_as_the_general_path(ms: int) -> None:
    """The validator's shortcut for int epoch milliseconds gives what ``_to_utc`` gives, and the same
    refusal outside datetime's range."""
    body = {"event_id": "e", "event_type": "view", "user_id": "u", "item_id": "i", "timestamp": ms}
    try:
        expected = _to_utc(ms)
    except ValueError:
        with pytest.raises(ValidationError, match="timestamp"):
            InteractionEvent.model_validate(body)
        return
    assert InteractionEvent.model_validate(body).timestamp == expected
