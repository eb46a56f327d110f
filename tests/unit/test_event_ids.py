"""Event ids are checked by pydantic-core itself (a string, not blank, no control character), no longer
by a Python validator per field: every input must get the very result the Python check gave, the
reason a producer reads included. The reference below is the old model, kept here only for this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import field_validator

import core.events as events
from core.events import Id128, Id256, InteractionEvent, ParseError, _check_id, validate_interaction

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ID_FIELDS = ("event_id", "user_id", "item_id", "session_id", "recommendation_id")
BASE: dict[str, Any] = {
    "event_id": "e-1",
    "event_type": "click",
    "user_id": "u-1",
    "item_id": "i-1",
    "timestamp": 1_764_547_200_000,
}


class _PythonChecked(InteractionEvent):
    """The model as it was: plain length-bounded strings behind a Python ``before`` validator."""

    event_id: Id128
    user_id: Id256
    item_id: Id256
    session_id: Id256 | None = None
    recommendation_id: Id128 | None = None

    @field_validator(*ID_FIELDS, mode="before")
    @classmethod
    def _strict_str(cls, v: Any) -> Any:
        return _check_id(v)


def _outcome(data: dict[str, Any], model: type[InteractionEvent]) -> Any:
    original = events.InteractionEvent
    events.InteractionEvent = model  # type: ignore[misc]
    try:
        result = validate_interaction(data, now=NOW)
    finally:
        events.InteractionEvent = original  # type: ignore[misc]
    if isinstance(result, ParseError):
        return ("error", result.code, result.reason, result.field)
    return ("ok", {f: getattr(result, f) for f in ID_FIELDS})


# Characters around every boundary the check draws: C0, DEL, C1, the line separators, Unicode spaces.
_C0_C1 = "\x00\x01\t\n\r\x1c\x1f \x7f\x80\x85\x9f"
_EDGES = _C0_C1 + "\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000\ufeff\u180e\u200b"
_TEXT = st.text(alphabet=st.sampled_from(list(_EDGES) + list("aZ9-_.:é漢")), max_size=6)
_VALUES = st.one_of(
    _TEXT,
    _TEXT.map(lambda t: "x" * 126 + t),  # around the 128 and 256 bounds, with and without bad characters
    _TEXT.map(lambda t: "y" * 254 + t),
    st.none(),
    st.integers(-5, 5),
    st.floats(allow_nan=False),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(field=st.sampled_from(ID_FIELDS), value=_VALUES, second=st.sampled_from(ID_FIELDS), other=_VALUES)
def test_native_id_checks_give_the_python_checks_results(
    field: str, value: Any, second: str, other: Any
) -> None:
    data = {**BASE, second: other, field: value}
    assert _outcome(data, InteractionEvent) == _outcome(data, _PythonChecked)


@pytest.mark.parametrize(
    ("value", "code", "reason"),
    [
        (7, "wrong_type", "field 'user_id': must be a string"),
        ("", "invalid_value", "field 'user_id': must not be blank"),
        ("\u3000 ", "invalid_value", "field 'user_id': must not be blank"),
        ("a\x85b", "control_character", "field 'user_id': contains the control character '\\x85'"),
        ("z" * 257, "invalid_value", "field 'user_id': String should have at most 256 characters"),
        ("z" * 300 + "\x01", "control_character", "field 'user_id': contains the control character '\\x01'"),
    ],
)
def test_a_refused_id_says_why(value: Any, code: str, reason: str) -> None:
    result = validate_interaction({**BASE, "user_id": value}, now=NOW)
    assert isinstance(result, ParseError)
    assert (result.code, result.reason, result.field) == (code, reason, "user_id")


def test_ids_with_inner_spaces_and_non_ascii_letters_are_kept_as_sent() -> None:
    result = validate_interaction({**BASE, "item_id": " sku 1 é ", "session_id": "s\u00a0x"}, now=NOW)
    assert isinstance(result, InteractionEvent)
    assert (result.item_id, result.session_id) == (" sku 1 é ", "s\u00a0x")
