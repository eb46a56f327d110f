"""Event schema v1 and the parser every entry point shares (consumer, HTTP ingest, replay).

``parse_interaction`` / ``parse_item_update`` turn raw bytes into a model or a ``ParseError`` with a
machine code and a human reason; they never raise.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, cast

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from core.storable import STORABLE_CODES, control_character, property_key_problem, scan

SCHEMA_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024
MAX_PROPERTIES = 32
MAX_PROPERTY_KEY = 64
MAX_PROPERTY_STR = 1024
MAX_FUTURE = timedelta(days=1)
# No served list is longer than this (serving.max_k and rerank stay far below it).
MAX_POSITION = 10_000

Scalar = str | int | float | bool | None


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    FAVORITE = "favorite"
    PURCHASE = "purchase"
    RATE = "rate"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

ErrorCode = Literal[
    "bad_json",
    "not_utf8",
    "not_object",
    "missing_field",
    "wrong_type",
    "unknown_event_type",
    "oversized",
    "bad_timestamp",
    "future_timestamp",
    "invalid_value",
    # What BSON, MongoDB or Redis cannot hold (see core.storable).
    "invalid_key",
    "control_character",
    "integer_out_of_range",
    "invalid_unicode",
    "too_deep",
]


class ParseError(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    reason: str
    field: str | None = None


# 9999-12-31T23:59:59.999Z, the last millisecond a datetime can hold.
_MAX_EPOCH_MS = 253_402_300_799_999


def _from_epoch_ms(ms: float) -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        # Pydantic turns only ValueError into a validation error; anything else would escape the parser.
        raise ValueError(f"epoch milliseconds {ms} are out of range") from exc


def _to_utc(value: Any) -> datetime:
    """ISO-8601 string or epoch milliseconds to an aware UTC datetime."""
    if isinstance(value, bool):
        raise ValueError("timestamp must be ISO-8601 text or epoch milliseconds, not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("epoch milliseconds must be a finite, non-negative number")
        return _from_epoch_ms(value)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _from_epoch_ms(int(text))
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"timestamp {value!r} is neither ISO-8601 nor epoch milliseconds") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError("timestamp must be ISO-8601 text or epoch milliseconds")


def _check_id(v: Any) -> Any:
    """Ids are strings without control characters (they become Redis keys and log fields)."""
    if v is None:
        return v
    if not isinstance(v, str):
        raise ValueError("must be a string")
    if not v.strip():
        raise ValueError("must not be blank")
    if (ch := control_character(v)) is not None:
        raise PydanticCustomError(
            "control_character", "contains the control character {char}", {"char": ascii(ch)}
        )
    return v


def _check_properties(props: Any) -> dict[str, Any] | None:
    if props is None:
        return None
    if not isinstance(props, dict):
        raise ValueError("properties must be a flat JSON object of scalars")
    if len(props) > MAX_PROPERTIES:
        raise ValueError(f"properties may hold at most {MAX_PROPERTIES} keys, got {len(props)}")
    for key, val in props.items():
        if not key or len(key) > MAX_PROPERTY_KEY:
            raise ValueError(f"property keys must be 1..{MAX_PROPERTY_KEY} characters")
        if (problem := property_key_problem(key)) is not None:
            raise PydanticCustomError("invalid_key", problem)
        if isinstance(val, dict | list):
            raise ValueError(f"property {key!r} must be a scalar (string, number, boolean or null)")
        if isinstance(val, str) and len(val) > MAX_PROPERTY_STR:
            raise ValueError(f"property {key!r} is longer than {MAX_PROPERTY_STR} characters")
        if isinstance(val, float) and not math.isfinite(val):
            raise ValueError(f"property {key!r} must be a finite number")
    return props


Id128 = Annotated[str, Field(min_length=1, max_length=128)]
Id256 = Annotated[str, Field(min_length=1, max_length=256)]

# An event's ids, checked by pydantic-core itself: a string (no coercion), not blank, no control
# character (the same class as core.storable's). A Python validator per id cost the consumer ~2 µs
# per event; a failure is re-checked by _check_id (``_id_reason``) so its reason reads as before.
_CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CLEAN_ID = rf"^[^{_CONTROL_CLASS}]*[^\s{_CONTROL_CLASS}][^{_CONTROL_CLASS}]*$"
_EventId128 = Annotated[str, Field(min_length=1, max_length=128, strict=True, pattern=_CLEAN_ID)]
_EventId256 = Annotated[str, Field(min_length=1, max_length=256, strict=True, pattern=_CLEAN_ID)]
_ID_FIELDS = frozenset({"event_id", "user_id", "item_id", "session_id", "recommendation_id"})
_ID_ERRORS = frozenset({"string_type", "string_pattern_mismatch", "string_too_short", "string_too_long"})


class InteractionEvent(BaseModel):
    """A shopper's interaction with an item. ``event_id`` is the idempotency key."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    event_id: _EventId128
    event_type: EventType
    user_id: _EventId256
    item_id: _EventId256
    timestamp: datetime
    session_id: _EventId256 | None = None
    value: float | None = None
    properties: dict[str, Scalar] | None = None
    # Attribution (core.attribution): the ``request_id`` of the served list the shopper acted on, and the
    # item's 0-based position in it. Both optional, so schema v1 stays compatible.
    recommendation_id: _EventId128 | None = None
    position: Annotated[int, Field(ge=0, le=MAX_POSITION)] | None = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_ts(cls, v: Any) -> datetime:
        # Epoch milliseconds as an int within datetime's range (what producers send) skip _to_utc's
        # chain of type checks: this runs for every event the consumer reads.
        if type(v) is int and 0 <= v <= _MAX_EPOCH_MS:
            return datetime.fromtimestamp(v / 1000.0, tz=UTC)
        return _to_utc(v)

    @field_validator("position", mode="before")
    @classmethod
    def _int_position(cls, v: Any) -> Any:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError("position must be an integer")
        return v

    @field_validator("value", mode="before")
    @classmethod
    def _finite_value(cls, v: Any) -> Any:
        if isinstance(v, bool) or (v is not None and not isinstance(v, int | float)):
            raise ValueError("value must be a number")
        if v is not None and not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v

    @field_validator("properties", mode="before")
    @classmethod
    def _props(cls, v: Any) -> dict[str, Any] | None:
        return _check_properties(v)

    @model_validator(mode="after")
    def _rate_needs_value(self) -> InteractionEvent:
        if self.event_type is EventType.RATE and self.value is None:
            raise ValueError("value is required when event_type is 'rate'")
        return self

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_wire())

    def to_wire(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        data["timestamp"] = int(self.timestamp.timestamp() * 1000)
        return data

    @property
    def ts_ms(self) -> int:
        return int(self.timestamp.timestamp() * 1000)


class ItemUpdate(BaseModel):
    """A catalog update; absent fields are left as they were."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Id256
    title: Annotated[str, Field(max_length=1024)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    price: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    available: bool | None = None
    properties: dict[str, Scalar] | None = None

    @field_validator("item_id", mode="before")
    @classmethod
    def _strict_id(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("must be a string")
        return _check_id(v)

    @field_validator("category", mode="before")
    @classmethod
    def _clean_category(cls, v: Any) -> Any:
        # The category names a Redis key (per-category popularity) and a log field.
        if isinstance(v, str) and (ch := control_character(v)) is not None:
            raise PydanticCustomError(
                "control_character", "contains the control character {char}", {"char": ascii(ch)}
            )
        return v

    @field_validator("properties", mode="before")
    @classmethod
    def _props(cls, v: Any) -> dict[str, Any] | None:
        return _check_properties(v)

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


def _decode(raw: bytes | str) -> dict[str, Any] | ParseError:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogatepass")
    if len(raw) > MAX_EVENT_BYTES:
        return ParseError(
            code="oversized", reason=f"payload is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES}"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses invalid UTF-8 too; only then is the payload decoded to say which it was
        # (decoding every valid payload twice cost the consumer CPU per event).
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return ParseError(code="not_utf8", reason=f"payload is not valid UTF-8 (byte {bad.start})")
        return ParseError(code="bad_json", reason=f"payload is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return ParseError(
            code="not_object", reason=f"payload must be a JSON object, got {type(data).__name__}"
        )
    return data


def _id_reason(kind: str, loc: str | None, value: Any) -> tuple[str, str] | None:
    """(kind, message) of ``_check_id``'s objection to an event id pydantic-core refused, or None
    (then pydantic's own error stands: e.g. a clean id that is too long)."""
    if kind not in _ID_ERRORS or loc not in _ID_FIELDS:
        return None
    try:
        _check_id(value)
    except PydanticCustomError as exc:
        return exc.type, exc.message()
    except ValueError as exc:
        return "value_error", str(exc)
    return None


def _from_validation(exc: ValidationError) -> ParseError:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or None
    if loc is not None and control_character(loc) is not None:
        loc = ascii(loc)[1:-1]  # an unknown field's name is input: keep the reason on one line
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if (checked := _id_reason(kind, loc, err.get("input"))) is not None:
        kind, msg = checked
    if kind in STORABLE_CODES:
        code = cast(ErrorCode, kind)
        return ParseError(code=code, reason=f"field '{loc}': {msg}" if loc else msg, field=loc)
    if kind == "missing":
        return ParseError(code="missing_field", reason=f"required field '{loc}' is missing", field=loc)
    if kind == "extra_forbidden":
        return ParseError(code="invalid_value", reason=f"unknown field '{loc}'", field=loc)
    if loc == "event_type" and kind == "enum":
        return ParseError(
            code="unknown_event_type",
            reason=f"event_type {err.get('input')!r} is not one of {', '.join(EVENT_TYPES)}",
            field=loc,
        )
    if msg.startswith("value is required"):
        return ParseError(code="missing_field", reason=msg, field="value")
    if loc == "timestamp":
        return ParseError(code="bad_timestamp", reason=f"timestamp: {msg}", field=loc)
    if kind.endswith("_type") or kind in {"string_type", "dict_type", "float_parsing", "bool_parsing"}:
        return ParseError(code="wrong_type", reason=f"field '{loc}': {msg}", field=loc)
    if msg in ("must be a string", "value must be a number", "position must be an integer"):
        return ParseError(code="wrong_type", reason=f"field '{loc}': {msg}", field=loc)
    return ParseError(code="invalid_value", reason=f"field '{loc}': {msg}" if loc else msg, field=loc)


def _unstorable(data: dict[str, Any]) -> ParseError | None:
    """Checked before the schema so that any key anywhere (even an unknown field) is covered."""
    problem = scan(data)
    if problem is None:
        return None
    return ParseError(code=cast(ErrorCode, problem.code), reason=problem.reason, field=problem.field)


def validate_interaction(data: Any, *, now: datetime | None = None) -> InteractionEvent | ParseError:
    """Validate an already-decoded object (HTTP bodies arrive this way)."""
    if not isinstance(data, dict):
        return ParseError(code="not_object", reason=f"event must be a JSON object, got {type(data).__name__}")
    if (problem := _unstorable(data)) is not None:
        return problem
    try:
        event = InteractionEvent.model_validate(data)
    except ValidationError as exc:
        return _from_validation(exc)
    limit = (now or datetime.now(UTC)) + MAX_FUTURE
    if event.timestamp > limit:
        return ParseError(
            code="future_timestamp",
            reason=f"timestamp {event.timestamp.isoformat()} is more than 1 day in the future",
            field="timestamp",
        )
    return event


def parse_interaction(raw: bytes | str, *, now: datetime | None = None) -> InteractionEvent | ParseError:
    data = _decode(raw)
    if isinstance(data, ParseError):
        return data
    return validate_interaction(data, now=now)


def validate_item_update(data: Any) -> ItemUpdate | ParseError:
    if not isinstance(data, dict):
        return ParseError(
            code="not_object", reason=f"item update must be a JSON object, got {type(data).__name__}"
        )
    if (problem := _unstorable(data)) is not None:
        return problem
    try:
        return ItemUpdate.model_validate(data)
    except ValidationError as exc:
        return _from_validation(exc)


def parse_item_update(raw: bytes | str) -> ItemUpdate | ParseError:
    data = _decode(raw)
    if isinstance(data, ParseError):
        return data
    return validate_item_update(data)
