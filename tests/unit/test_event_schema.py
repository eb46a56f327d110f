"""The published JSON Schema of event v1 says what the parser says: the committed files are what the
models generate, the parser's valid events pass, its refusals fail (except the rules the schema's
description names as not expressible), and a property test holds the two to the same verdict."""

from __future__ import annotations

import difflib
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from core.event_schema import SCHEMAS, interaction_schema, item_update_schema
from core.events import EVENT_TYPES, ParseError, validate_interaction, validate_item_update
from tests.unit.test_events import BAD_INTERACTIONS, BAD_ITEMS, GOOD, NOW
from tooling.event_schema import SCHEMA_DIR, main, render

EVENTS = Draft202012Validator(interaction_schema())
ITEMS = Draft202012Validator(item_update_schema())

# Refusals of the parser the schema cannot express; each is named in the schema's description.
NOT_EXPRESSIBLE = {
    "oversized payload": "bytes of UTF-8",
    "timestamp 2 days ahead": "1 day in the future",
    "naive timestamp 25h ahead": "1 day in the future",
}
# Parser refusals that never reach a schema (the bytes are not a JSON document at all).
NOT_JSON = ("bad_json", "not_utf8")


def test_the_committed_schemas_are_generated_from_the_current_models() -> None:
    for name, build in SCHEMAS.items():
        committed, current = (SCHEMA_DIR / name).read_text(encoding="utf-8"), render(build())
        diff = difflib.unified_diff(committed.splitlines(), current.splitlines(), name, "models", lineterm="")
        assert committed == current, f"docs/schema/{name} is stale: make schema\n" + "\n".join(
            list(diff)[:40]
        )
    assert main(["--check"]) == 0


def test_the_schemas_are_valid_draft_2020_12() -> None:
    for build in SCHEMAS.values():
        Draft202012Validator.check_schema(build())


def test_every_model_field_is_in_the_schema() -> None:
    from core.events import InteractionEvent, ItemUpdate

    assert set(interaction_schema()["properties"]) == set(InteractionEvent.model_fields)
    assert set(item_update_schema()["properties"]) == set(ItemUpdate.model_fields)
    assert interaction_schema()["additionalProperties"] is False


VALID_EVENTS: list[dict[str, Any]] = [
    *({**GOOD, "event_type": t, **({"value": 4.5} if t == "rate" else {})} for t in EVENT_TYPES),
    {**GOOD, "timestamp": 1714561200000},
    {**GOOD, "timestamp": 1714561200123.0},
    {**GOOD, "timestamp": "1714561200000"},
    {**GOOD, "timestamp": "2024-05-01T13:00:00+02:00"},
    {**GOOD, "timestamp": "2024-05-01T11:00:00"},
    {**GOOD, "timestamp": "2024-05-01"},
    {
        **GOOD,
        "event_type": "rate",
        "value": 4,
        "session_id": "s-9",
        "recommendation_id": "req-1",
        "position": 3,
        "user_id": "ユーザー 42",
        "properties": {"source": "app", "pos": 3, "promo": True, "score": 0.5, "note": None, "n": 2**63 - 1},
    },
    {**GOOD, "value": None, "properties": None, "session_id": None},
]


@pytest.mark.parametrize("event", VALID_EVENTS)
def test_valid_events_pass_both(event: dict[str, Any]) -> None:
    assert not isinstance(validate_interaction(event, now=NOW), ParseError)
    assert list(EVENTS.iter_errors(event)) == []


@pytest.mark.parametrize(("case", "raw", "code"), [c[:3] for c in BAD_INTERACTIONS])
def test_the_parsers_refusals_fail_the_schema(case: str, raw: bytes, code: str) -> None:
    if code in NOT_JSON:
        pytest.skip("not a JSON document")
    data = orjson.loads(raw)
    if case in NOT_EXPRESSIBLE:
        # Only the parser refuses it for this reason (the schema may refuse it for another).
        assert NOT_EXPRESSIBLE[case] in interaction_schema()["description"]
    else:
        assert not EVENTS.is_valid(data), case


STORABLE_REFUSALS: list[dict[str, Any]] = [
    {"properties": {"a\x00b": 1}},
    {"properties": {"$where": 1}},
    {"properties": {"a.b": 1}},
    {"properties": {"a\nb": 1}},
    {"user_id": "p\x00u"},
    {"user_id": "line\nbreak"},
    {"event_id": "e\x7f"},
    {"item_id": "i\x85"},
    {"session_id": "s\u2028"},
    {"timestamp": 2**63},
    {"unknown\x00": 1},
    {"deep": [[[[1]]]]},
    {"position": -1},
    {"position": True},
    {"recommendation_id": ""},
]


@pytest.mark.parametrize("override", STORABLE_REFUSALS)
def test_unstorable_events_fail_both(override: dict[str, Any]) -> None:
    event = {**GOOD, **override}
    assert isinstance(validate_interaction(event, now=NOW), ParseError)
    assert not EVENTS.is_valid(event)


@pytest.mark.parametrize(
    ("override", "phrase"),
    [
        ({"user_id": "u\ud800"}, "lone UTF-16 surrogate"),
        ({"value": 2**64}, "'value' included"),
        ({"properties": {"n": 18446744073709551615}}, "signed 64 bits"),
        ({"position": 1.0}, "without a fraction"),
        ({"timestamp": "2024-13-45"}, "must parse as ISO-8601"),
    ],
)
def test_what_only_the_parser_refuses_is_in_the_description(override: dict[str, Any], phrase: str) -> None:
    event = {**GOOD, **override}
    assert isinstance(validate_interaction(event, now=NOW), ParseError)
    assert EVENTS.is_valid(event)
    assert phrase in interaction_schema()["description"]


@pytest.mark.parametrize(("case", "raw", "code"), [c[:3] for c in BAD_ITEMS])
def test_the_parsers_item_refusals_fail_the_schema(case: str, raw: bytes, code: str) -> None:
    if code in NOT_JSON:
        pytest.skip("not a JSON document")
    assert not ITEMS.is_valid(orjson.loads(raw)), case


@pytest.mark.parametrize(
    "update",
    [
        {"item_id": "i-1"},
        {"item_id": "i-1", "title": "Blue mug", "category": "kitchen", "price": 12.5, "available": True},
        {"item_id": "i-2", "price": 0, "available": False, "properties": {"colour": "blue", "size": 2}},
        {"item_id": "i 1", "category": "a/b", "title": "x\x00y"},
    ],
)
def test_valid_item_updates_pass_both(update: dict[str, Any]) -> None:
    assert not isinstance(validate_item_update(update), ParseError)
    assert ITEMS.is_valid(update)


def test_the_item_schema_is_stricter_where_it_says_so() -> None:
    for loose in ({"item_id": "i", "price": "5"}, {"item_id": "i", "available": "true"}):
        assert not isinstance(validate_item_update(loose), ParseError)
        assert not ITEMS.is_valid(loose)
    assert "'price' must be a JSON number" in item_update_schema()["description"]


# ------------------------------------------------------------------ the same verdict on generated events

# A valid event with at most two fields replaced by values either side of each rule, within what the
# schema can express (no lone surrogates: st.text leaves them out; integers within 64 bits; timestamps
# in the past), so about half the examples are valid and half are not.
clean_ids = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=6
).filter(str.strip)
any_ids = st.text(max_size=6) | st.sampled_from(["", " ", "\t", "a\nb", "u\x7f", "\u2028", "x" * 257])
past = datetime.now(UTC) - timedelta(days=400)
clean_timestamps = (
    st.integers(min_value=0, max_value=int(past.timestamp() * 1000))
    | st.floats(min_value=0, max_value=past.timestamp() * 1000)
    | st.datetimes(max_value=past.replace(tzinfo=None)).map(lambda d: d.isoformat())
    | st.datetimes(max_value=past.replace(tzinfo=None)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))
)
any_timestamps = st.sampled_from(["", "yesterday", "12", "2024-05-01Z", "2024-13-01", True, None, "-5", -5])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4)
)
prop_keys = st.text(max_size=4) | st.sampled_from(["$x", "a.b", "k\n", "ok"])
FIELDS: dict[str, Any] = {
    "event_id": (clean_ids, any_ids),
    "event_type": (
        st.sampled_from([t for t in EVENT_TYPES if t != "rate"]),
        st.sampled_from(["rate", "", 3]),
    ),
    "user_id": (clean_ids, any_ids | st.integers()),
    "item_id": (clean_ids, any_ids),
    "timestamp": (clean_timestamps, any_timestamps),
    "session_id": (clean_ids | st.none(), any_ids),
    "value": (
        st.none() | st.integers(-10, 10) | st.floats(allow_nan=False, allow_infinity=False),
        st.booleans() | st.text(max_size=2),
    ),
    "properties": (
        st.dictionaries(st.sampled_from(["a", "ключ", "b-c"]), scalars, max_size=3),
        st.dictionaries(prop_keys, scalars | st.lists(scalars, max_size=1), max_size=3) | scalars,
    ),
    "position": (st.none() | st.integers(0, 10_000), st.integers(-2, 10_001) | st.booleans()),
    "recommendation_id": (clean_ids | st.none(), any_ids),
    "colour": (st.nothing(), st.text(max_size=2)),
}
REQUIRED = ("event_id", "event_type", "user_id", "item_id", "timestamp")


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {}
    for name, (clean, _) in FIELDS.items():
        if name in REQUIRED or (name != "colour" and draw(st.booleans())):
            event[name] = draw(clean)
    for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=2, unique=True)):
        if draw(st.booleans()) and name in event:
            del event[name]
        else:
            event[name] = draw(FIELDS[name][1])
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events())
def test_parser_and_schema_agree_on_generated_events(event: dict[str, Any]) -> None:
    parsed = validate_interaction(event)
    verdict = EVENTS.is_valid(event)
    # Documented as beyond the schema: a string shaped like an ISO date that is no date ('2024-13-01').
    unexpressible = isinstance(parsed, ParseError) and parsed.code == "bad_timestamp" and verdict
    if unexpressible:
        assert isinstance(event.get("timestamp"), str) and "ISO-8601" in EVENTS.schema["description"]
        return
    assert verdict == (not isinstance(parsed, ParseError)), (parsed, list(EVENTS.iter_errors(event))[:2])
