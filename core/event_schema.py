"""JSON Schema (draft 2020-12) of event v1, generated from ``core.events``' pydantic models.

``model_json_schema`` describes the Python types after validation; the wire accepts more in places
(a timestamp may be epoch milliseconds) and the ``mode="before"`` validators refuse more (blank ids,
control characters, property keys MongoDB cannot hold, ``rate`` without a value). The overrides below
state those wire rules on top of what pydantic generates, so a field added to a model appears here
by itself and a rule kept only in a validator shows up as a difference in the tests
(tests/unit/test_event_schema.py checks the schema against the parser's own accept/reject cases).

What JSON Schema cannot say is written into the schema's ``description`` (``NOT_EXPRESSIBLE``).
The committed copies are docs/schema/event-v1.json and docs/schema/item-update-v1.json
(``python -m tooling.event_schema`` rewrites them); serving answers them at /v1/schema/events and
/v1/schema/items.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from core.events import (
    MAX_EVENT_BYTES,
    MAX_PROPERTIES,
    MAX_PROPERTY_KEY,
    MAX_PROPERTY_STR,
    InteractionEvent,
    ItemUpdate,
)
from core.storable import INT64_MAX, INT64_MIN

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# The control characters core.storable refuses (C0, DEL, C1, U+2028/U+2029), as an ECMA-262 class body.
CONTROL_CLASS = "\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029"
# Not blank, no control character: core.events._check_id.
# Each pattern ends in $(?!\n): ECMA-262's "$" is the end of the string, but Python's re (which the
# jsonschema package uses) also lets "$" match before a final newline, so a key like "a" + newline would pass
# there while the parser refuses it. The lookahead makes both engines agree.
END = "$(?!\\n)"
ID_PATTERN = f"^[^{CONTROL_CLASS}]*[^\\s{CONTROL_CLASS}][^{CONTROL_CLASS}]*{END}"
# datetime.fromtimestamp's range ends in the year 9999: 253402300799999 ms, 15 digits.
MAX_EPOCH_MS = 253_402_300_799_999
# Epoch milliseconds as digits, or something shaped like an ISO-8601 date(-time); the parser decides.
# (digits only are always read as epoch milliseconds, so an ISO basic-format date needs its 'T').
TIMESTAMP_PATTERN = "^\\s*(\\d{1,15}|\\d{4}-.*|\\d{8}T.*)\\s*$"

# What the parser (core.events) enforces and JSON Schema cannot express, said in each description.
NOT_EXPRESSIBLE = (
    "Rules the parser (core.events) enforces that this schema cannot express: the payload is at most "
    f"{MAX_EVENT_BYTES} bytes of UTF-8; no string or key may hold a lone UTF-16 surrogate; every JSON "
    f"integer must fit in signed 64 bits ({INT64_MIN}..{INT64_MAX})"
)
EVENT_NOT_EXPRESSIBLE = (
    ", 'value' included; a timestamp string must parse as ISO-8601 (Python's datetime.fromisoformat, "
    "'Z' allowed, UTC when it has no offset) and a timestamp may be at most 1 day in the future by the "
    "server's clock; 'position' must be written without a fraction (the parser refuses 1.0, which "
    "JSON Schema counts as an integer). The parser is the authority: it answers every refusal with a "
    "code and a reason."
)
ITEM_NOT_EXPRESSIBLE = (
    ". Where the schema is stricter: 'price' must be a JSON number and 'available' a JSON boolean "
    '(the parser also coerces "5" and "true"; do not rely on it). The parser is the authority: it '
    "answers every refusal with a code and a reason."
)

# core.storable.property_key_problem: no leading '$', no '.', no control characters (MongoDB reads
# them as operators and paths; BSON cannot hold NUL in a key). The API's OpenAPI schema uses it too.
PROPERTY_NAMES: dict[str, Any] = {
    "minLength": 1,
    "maxLength": MAX_PROPERTY_KEY,
    "pattern": f"^[^$.{CONTROL_CLASS}][^.{CONTROL_CLASS}]*{END}",
}

PROPERTIES: dict[str, Any] = {
    "type": "object",
    "description": "a flat object of scalars",
    "maxProperties": MAX_PROPERTIES,
    "propertyNames": PROPERTY_NAMES,
    "additionalProperties": {
        "anyOf": [
            {"type": "string", "maxLength": MAX_PROPERTY_STR},
            # Integers too; their 64-bit bound cannot be stated (a schema cannot tell 1e300 from an
            # integer, and the parser accepts it as a float): see NOT_EXPRESSIBLE.
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
        ]
    },
}

TIMESTAMP: dict[str, Any] = {
    "description": "ISO-8601 text (UTC when it has no offset) or epoch milliseconds (a number or digits)",
    "anyOf": [
        {"type": "string", "pattern": TIMESTAMP_PATTERN},
        {"type": "number", "minimum": 0, "maximum": MAX_EPOCH_MS},
    ],
}

# A rating needs its value (InteractionEvent._rate_needs_value).
RATE_NEEDS_VALUE: dict[str, Any] = {
    "if": {"properties": {"event_type": {"const": "rate"}}, "required": ["event_type"]},
    "then": {"properties": {"value": {"type": "number"}}, "required": ["value"]},
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _ids(props: dict[str, Any], names: tuple[str, ...]) -> None:
    """Add the id rule to each named field's string schema (nullable fields keep their null)."""
    for name in names:
        field = props[name]
        strings = [s for s in field.get("anyOf", [field]) if s.get("type") == "string"]
        assert len(strings) == 1, f"{name}: expected one string schema, got {field}"
        strings[0]["pattern"] = ID_PATTERN


def _finish(
    schema: dict[str, Any], schema_id: str, title: str, description: str, limits: str
) -> dict[str, Any]:
    for field in schema["properties"].values():
        field.pop("title", None)
    schema.pop("title", None)
    model_doc = schema.pop("description", "")
    return {
        "$schema": DRAFT,
        "$id": schema_id,
        "title": title,
        "description": f"{description} {model_doc} {NOT_EXPRESSIBLE}{limits}".replace("``", "'"),
        **schema,
    }


def interaction_schema() -> dict[str, Any]:
    """The schema of an interaction event (topic kafka.topics.events; POST /v1/events items)."""
    schema = copy.deepcopy(InteractionEvent.model_json_schema(mode="validation"))
    props = schema["properties"]
    _ids(props, ("event_id", "user_id", "item_id", "session_id", "recommendation_id"))
    props["timestamp"] = TIMESTAMP
    # model_json_schema says nothing of the before-validators: a number (never a boolean), finite.
    props["value"] = _nullable({"type": "number"})
    props["value"]["description"] = "required for 'rate' (the rating); otherwise optional"
    props["properties"] = _nullable(copy.deepcopy(PROPERTIES))
    schema.update(RATE_NEEDS_VALUE)
    return _finish(
        schema,
        "urn:streamrec:schema:event:v1",
        "streamrec interaction event v1",
        "One shopper interaction, the value of a record on the events topic (keyed by user_id) or one "
        "element of the POST /v1/events body.",
        EVENT_NOT_EXPRESSIBLE,
    )


def item_update_schema() -> dict[str, Any]:
    """The schema of a catalog update (topic kafka.topics.items, keyed by item_id)."""
    schema = copy.deepcopy(ItemUpdate.model_json_schema(mode="validation"))
    props = schema["properties"]
    _ids(props, ("item_id",))
    category = next(s for s in props["category"]["anyOf"] if s.get("type") == "string")
    category["pattern"] = f"^[^{CONTROL_CLASS}]+$"
    # Stricter than the parser on purpose: it coerces "5" to a price and "true" to a boolean,
    # a producer following this schema never relies on that.
    props["price"] = _nullable({"type": "number", "minimum": 0})
    props["properties"] = _nullable(copy.deepcopy(PROPERTIES))
    return _finish(
        schema,
        "urn:streamrec:schema:item-update:v1",
        "streamrec catalog update v1",
        "One catalog update, the value of a record on the items topic (keyed by item_id); the body of "
        "PUT /v1/items/{item_id} is the same without item_id.",
        ITEM_NOT_EXPRESSIBLE,
    )


SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    "event-v1.json": interaction_schema,
    "item-update-v1.json": item_update_schema,
}
