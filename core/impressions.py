"""What was shown: the impression record serving produces to Kafka and the consumer stores.

One record per served list (recommendations, similar, popular, ...), keyed by ``user_id`` (or the
anchor item for an anonymous ``/similar``) so one shopper's impressions stay in order on one partition.
``impression_id`` is the response's ``request_id``; a shadow list (a candidate model computed off the
request path, never shown) gets ``{request_id}:shadow`` and ``shadow: true``, so it is stored
beside the live one and never attributed.

Stored in MongoDB (collection ``impressions``, ``_id`` = impression_id, a TTL index on ``ts``)
as :func:`impression_document` writes it; the parser here is the consumer's and the tests' only one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.events import MAX_EVENT_BYTES, MAX_POSITION, ParseError, _check_id, _to_utc
from core.storable import scan

IMPRESSION_SCHEMA_VERSION = 1
# The list endpoints that log impressions (issue 13 adds trending, new and rerank).
Surface = Literal["recommendations", "similar", "popular", "trending", "new", "rerank"]
SURFACES: tuple[str, ...] = ("recommendations", "similar", "popular", "trending", "new", "rerank")
MAX_IMPRESSION_ITEMS = 500
SHADOW_SUFFIX = ":shadow"

Id128 = Annotated[str, Field(min_length=1, max_length=128)]
# A request id is at most 128 characters (core.log_context); its shadow impression adds the suffix.
ImpressionId = Annotated[str, Field(min_length=1, max_length=128 + len(SHADOW_SUFFIX))]
Id256 = Annotated[str, Field(min_length=1, max_length=256)]


class ShownItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Id256
    position: Annotated[int, Field(ge=0, le=MAX_POSITION)]
    # The ranked item's reason kind (serving.ranking.Ranked.kind: personal, session, popular, ...).
    reason: Annotated[str, Field(max_length=64)] | None = None
    score: float | None = None

    @field_validator("item_id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> Any:
        return _check_id(v)


class Impression(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = IMPRESSION_SCHEMA_VERSION
    impression_id: ImpressionId
    request_id: Id128
    # None for an anonymous list (e.g. /popular without a shopper).
    user_id: Id256 | None = None
    surface: Surface
    model_version: str | None = None
    experiment_id: Id128 | None = None
    variant: Annotated[str, Field(max_length=64)] | None = None
    items: Annotated[list[ShownItem], Field(max_length=MAX_IMPRESSION_ITEMS)]
    ts: datetime
    shadow: bool = False
    # The anchor of a /similar list.
    anchor_item_id: Id256 | None = None

    @field_validator(
        "impression_id", "request_id", "user_id", "experiment_id", "anchor_item_id", mode="before"
    )
    @classmethod
    def _ids(cls, v: Any) -> Any:
        return _check_id(v)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> datetime:
        return _to_utc(v)

    @property
    def key(self) -> bytes:
        """The Kafka key: the shopper, else the anchor item, else the impression itself."""
        return (self.user_id or self.anchor_item_id or self.impression_id).encode()

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        data["ts"] = int(self.ts.timestamp() * 1000)
        return orjson.dumps(data)


def shadow_id(request_id: str) -> str:
    return f"{request_id}{SHADOW_SUFFIX}"


def parse_impression(raw: bytes | None) -> Impression | ParseError:
    """Bytes from the impressions topic → an ``Impression`` or a ``ParseError``; never raises."""
    if raw is None:
        return ParseError(code="missing_field", reason="record has no value")
    if len(raw) > MAX_EVENT_BYTES * 4:
        return ParseError(
            code="oversized", reason=f"impression is {len(raw)} bytes; the limit is {MAX_EVENT_BYTES * 4}"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ParseError(code="bad_json", reason=f"impression is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return ParseError(code="not_object", reason="impression must be a JSON object")
    if (problem := scan(data)) is not None:
        return ParseError(code="invalid_value", reason=problem.reason, field=problem.field)
    try:
        return Impression.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        msg = err["msg"].removeprefix("Value error, ")
        return ParseError(code="invalid_value", reason=f"field '{loc}': {msg}" if loc else msg, field=loc)


def impression_document(imp: Impression, ingested_at: datetime | None = None) -> dict[str, Any]:
    """The MongoDB document (``_id`` = impression id; ``item_ids`` indexed for window attribution)."""
    return {
        "_id": imp.impression_id,
        "request_id": imp.request_id,
        "user_id": imp.user_id,
        "surface": imp.surface,
        "model_version": imp.model_version,
        "experiment_id": imp.experiment_id,
        "variant": imp.variant,
        "items": [i.model_dump(exclude_none=True) for i in imp.items],
        "item_ids": [i.item_id for i in imp.items],
        "ts": imp.ts,
        "shadow": imp.shadow,
        "anchor_item_id": imp.anchor_item_id,
        "ingested_at": ingested_at or datetime.now(UTC),
    }
