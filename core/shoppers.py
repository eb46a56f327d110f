"""Shopper attributes (PUT /v1/users/{user_id}): validation and the segment key, no IO.

Attributes are a flat object of scalars (country, segment, age band...) under exactly the rules of an
item's ``properties`` (``core.events``: key rule, at most 32 keys, strings up to 1024 characters,
finite numbers, 64-bit integers, nothing MongoDB or BSON cannot hold), so one rule is documented and
enforced everywhere; the checks are ``core.events``' own, reused here rather than restated.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

# core.events' own checks (private there, shared on purpose: one rule for properties and attributes).
from core.events import ParseError, Scalar, _check_properties, _from_validation, _unstorable


class ShopperUpdate(BaseModel):
    """The body of PUT /v1/users/{user_id}: the shopper's attributes, replacing any stored ones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: dict[str, Scalar]

    @field_validator("attributes", mode="before")
    @classmethod
    def _flat_scalars(cls, v: Any) -> dict[str, Any]:
        if v is None:
            raise ValueError("attributes must be a flat JSON object of scalars, not null")
        checked = _check_properties(v)
        assert checked is not None
        return checked


def validate_shopper_update(data: Any) -> ShopperUpdate | ParseError:
    """An already-decoded body to a ``ShopperUpdate``, or a ``ParseError`` with a code and a reason."""
    if not isinstance(data, dict):
        return ParseError(
            code="not_object", reason=f"shopper attributes must be a JSON object, got {type(data).__name__}"
        )
    if (problem := _unstorable(data)) is not None:
        return problem
    try:
        return ShopperUpdate.model_validate(data)
    except ValidationError as exc:
        return _from_validation(exc)


def segment_key(value: Any) -> str | None:
    """The segment a stored attribute value names: strings as they are, other scalars as their JSON
    text (``true``, ``3``), so retrain and serving agree on one key; None (or absent) is no segment."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool | int | float):
        return orjson.dumps(value).decode()
    return None
