"""Response shapes for the OpenAPI document (handlers return orjson-rendered dicts of these shapes)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool

from core.event_schema import CONTROL_CLASS, PROPERTY_NAMES
from core.events import MAX_PROPERTIES, MAX_PROPERTY_STR
from serving.ranking import ReasonKind

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str = Field(description="also in the X-Request-ID response header and the logs")


class ErrorOut(BaseModel):
    error: ErrorBody


class RuleRef(BaseModel):
    rule_id: str
    kind: Literal["boost", "bury", "pin", "block", "diversity"]


RULES_DOC = "the merchandising rules that moved or placed this item (absent when none did)"


class Reason(BaseModel):
    kind: ReasonKind = Field(
        description="why the item is here; 'pinned': a pin rule placed it (see rules); 'content': placed "
        "by its catalog metadata (a new item, or an item similar to one: serving.cold_start)"
    )
    item_id: str | None = Field(
        default=None, description="for similar_to (content: when set): the item this result resembles"
    )
    new: bool | None = Field(
        default=None, description="content: the item has no interactions the model was trained on"
    )
    segment: str | None = Field(
        default=None, description="segment_popular: the shopper's segment whose popular items these are"
    )
    # trending (core.trending): the figures the growth was computed from.
    growth: float | None = Field(default=None, description="trending: short rate / (long rate + prior)")
    short_window: str | None = None
    short_per_hour: float | None = Field(default=None, description="trending: weighted events an hour")
    long_window: str | None = None
    long_per_hour: float | None = None
    # new arrivals (serving.discovery_ranking)
    added_at: str | None = Field(default=None, description="new: first seen in the catalog (ISO 8601 UTC)")
    basis: Literal["recency", "embedding"] | None = Field(
        default=None, description="new: placed by recency, or by the shopper's model embedding"
    )
    note: str | None = Field(
        default=None, description="new: why a personalised list kept this item by recency"
    )
    rules: list[RuleRef] | None = Field(default=None, description=RULES_DOC)


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="comparable only within one reason kind; the list order is the ranking")
    reason: Reason


class ExperimentFields(BaseModel):
    """Which A/B experiment and variant answered (core.experiments; serving.experiments)."""

    experiment_id: str | None = Field(
        description="the running experiment that splits this endpoint; null when none does (or, for "
        "similar items, when no user_id was given: shoppers are assigned by their id)"
    )
    variant: str | None = Field(
        description="the variant that answered: the shopper's own, or the control variant on a "
        "fallback (see variant_fallback); null when no experiment applies"
    )
    variant_fallback: str | None = Field(
        default=None,
        description="present only when the shopper's variant could not be served (its model version "
        "is not loaded): why, and which variant answered instead",
    )


class RecommendationsOut(ExperimentFields):
    user_id: str
    items: list[ScoredItem]
    model_version: str | None = Field(description="the model that ranked this list (the variant's, if any)")
    degraded: bool = Field(description="true when Redis was unreachable and a fallback answered")
    request_id: str = Field(description="also the impression_id of the impression this list is logged as")


class SimilarOut(ExperimentFields):
    item_id: str
    user_id: str | None = Field(description="the shopper whose exclusions applied, when one was given")
    items: list[ScoredItem]
    model_version: str = Field(description="the model that found these items (the variant's, if any)")
    degraded: bool = Field(description="true when the shopper's state could not be read (Redis down)")
    request_id: str = Field(description="also the impression_id of the impression this list is logged as")


class RecentItem(BaseModel):
    item_id: str
    event_type: str = Field(description="the newest interaction with the item")
    ts_ms: int = Field(description="its time, epoch milliseconds")
    timestamp: str = Field(description="the same time, ISO 8601 UTC")


class RecentOut(BaseModel):
    user_id: str
    items: list[RecentItem] = Field(description="distinct items, newest first; empty for an unknown user")
    degraded: bool = Field(description="true when Redis was unreachable (the list is then empty)")
    request_id: str


class PopularOut(BaseModel):
    items: list[ScoredItem]
    window: str
    category: str | None
    model_version: str | None
    degraded: bool
    request_id: str


class TrendingOut(BaseModel):
    items: list[ScoredItem] = Field(description="by growth; score = growth")
    category: str | None
    short_window: str
    long_window: str
    model_version: str | None
    degraded: bool = Field(description="true when Redis was unreachable (the last list read is served)")
    request_id: str


class NewOut(BaseModel):
    items: list[ScoredItem] = Field(
        description="newest first (score = added time, epoch seconds), or for a shopper with an "
        "embedding, embedded items re-ordered by the model (score = model score)"
    )
    category: str | None
    user_id: str | None
    personalized: bool = Field(description="true when the shopper's model embedding re-ordered the list")
    model_version: str | None
    degraded: bool
    request_id: str


class EventErrorOut(BaseModel):
    index: int
    code: str
    message: str


class AcceptedOut(BaseModel):
    accepted: int
    errors: list[EventErrorOut]


class EventBatchIn(BaseModel):
    events: list[Any] = Field(description="interaction events (schema v1)")


# A JSON number only (lax pydantic would take false or "5" as prices).
Price = Annotated[int, Strict(), Field(ge=0)] | Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]


class ItemUpdateIn(BaseModel):
    """The documented body of PUT /v1/items/{item_id}; ``core.events.ItemUpdate`` validates it (the
    same limits, mirrored here so the OpenAPI document states them)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=1024)
    category: str | None = Field(
        default=None, min_length=1, max_length=256, json_schema_extra={"pattern": f"^[^{CONTROL_CLASS}]+$"}
    )
    price: Price | None = None
    # Strict: JSON 0/1 or "true" are not booleans (pydantic would coerce them, the document says no).
    available: StrictBool | None = None
    properties: dict[str, Any] | None = Field(
        default=None,
        description="flat object of scalars",
        json_schema_extra={
            "maxProperties": MAX_PROPERTIES,
            "propertyNames": PROPERTY_NAMES,
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": MAX_PROPERTY_STR},
                    {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX},
                    {"type": "number"},
                    {"type": "boolean"},
                    {"type": "null"},
                ]
            },
        },
    )


class ErasureCounts(BaseModel):
    events: int
    impressions: int
    attributes: int = Field(description="stored shopper attributes deleted (0 or 1)")
    realtime_keys: int
    cached_results: int
    embeddings_suppressed: int


class ErasureOut(BaseModel):
    user_id: str
    deleted: ErasureCounts


class ModelOut(BaseModel):
    version: str
    metrics: dict[str, Any]
    trained_at: str | None
    loaded_at: str | None
    n_items: int
    index: str
    refused_versions: dict[str, str]


class RetrainIn(BaseModel):
    reason: str = Field(default="requested via API", max_length=1024)


class ChampionIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1024, description="kept in the model records")


class ChampionOut(BaseModel):
    version: str = Field(description="the champion now")
    previous_version: str | None = Field(description="the champion before this change")
    reason: str | None
    loaded_version: str | None = Field(
        description="the version this replica serves right now; every replica loads the new champion "
        "within serving.model_poll_s"
    )


class RetrainOut(BaseModel):
    request_id: str
    status: str
    reason: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route can answer."""
    return {code: {"model": ErrorOut} for code in codes}


# Kept for callers documenting every status at once.
ERRORS = errors(400, 401, 403, 404, 413, 422, 503)
