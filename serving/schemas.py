"""Response shapes for the OpenAPI document (handlers return orjson-rendered dicts of these shapes)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class Reason(BaseModel):
    kind: Literal["personalized", "session", "similar_to", "popular"]
    item_id: str | None = Field(default=None, description="for similar_to: the item this result resembles")


class ScoredItem(BaseModel):
    item_id: str
    score: float = Field(description="comparable only within one reason kind; the list order is the ranking")
    reason: Reason


class RecommendationsOut(BaseModel):
    user_id: str
    items: list[ScoredItem]
    model_version: str | None
    degraded: bool = Field(description="true when Redis was unreachable and a fallback answered")
    request_id: str


class SimilarOut(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model_version: str
    request_id: str


class PopularOut(BaseModel):
    items: list[ScoredItem]
    window: str
    category: str | None
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


class ItemUpdateIn(BaseModel):
    model_config = {"extra": "allow"}

    title: str | None = None
    category: str | None = None
    price: float | None = None
    available: bool | None = None
    properties: dict[str, Any] | None = None


class ErasureCounts(BaseModel):
    events: int
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


class RetrainOut(BaseModel):
    request_id: str
    status: str
    reason: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 413, 422, 503)
}
