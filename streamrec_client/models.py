"""Typed answers of the read endpoints (the shapes of serving.schemas, as a storefront reads them).

Unknown fields are ignored and reason kinds are plain strings, so a newer server (a new field, a new
reason) does not break an older client; tests/unit/test_client.py checks these fields against the
server's OpenAPI document.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Reason(_Answer):
    kind: str  # personalized, session, similar_to, popular, segment_popular (rerank: also unknown)
    item_id: str | None = None  # for similar_to: the item this result resembles
    segment: str | None = None  # for segment_popular: the shopper's segment


class ScoredItem(_Answer):
    item_id: str
    score: float | None  # null only for rerank's unknown ids
    reason: Reason


class _Experiment(_Answer):
    experiment_id: str | None = None
    variant: str | None = None
    variant_fallback: str | None = None


class Recommendations(_Experiment):
    user_id: str
    items: list[ScoredItem]
    model_version: str | None
    degraded: bool
    request_id: str


class Similar(_Experiment):
    item_id: str
    user_id: str | None
    items: list[ScoredItem]
    model_version: str
    degraded: bool
    request_id: str


class Popular(_Answer):
    items: list[ScoredItem]
    window: str
    category: str | None
    model_version: str | None
    degraded: bool
    request_id: str


class RecentItem(_Answer):
    item_id: str
    event_type: str
    ts_ms: int
    timestamp: str


class Recent(_Answer):
    user_id: str
    items: list[RecentItem]
    degraded: bool
    request_id: str


class EventError(_Answer):
    index: int
    code: str
    message: str


class Accepted(_Answer):
    accepted: int
    errors: list[EventError]


class Reranked(_Experiment):
    user_id: str
    items: list[ScoredItem]
    unknown_item_ids: list[str]
    unknown_dropped: bool
    model_version: str | None
    degraded: bool
    request_id: str
