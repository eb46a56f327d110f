"""Typed answers of the read endpoints (the shapes of serving.schemas, as a storefront reads them).

Unknown fields are ignored and reason kinds are plain strings, so a newer server (a new field, a new
reason) does not break an older client; tests/unit/test_client.py checks these fields against the
server's OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RuleRef(_Answer):
    rule_id: str
    kind: str  # boost, bury, pin, block, diversity


class Reason(_Answer):
    """Why an item is listed. Only ``kind`` is always there; each kind fills its own figures."""

    # personalized, session, similar_to, popular, segment_popular, trending, new, pinned, content
    # (rerank: also unknown)
    kind: str
    item_id: str | None = None  # for similar_to (content: when set): the item this result resembles
    new: bool | None = None  # content: the model was not trained on any interaction with the item
    segment: str | None = None  # for segment_popular: the shopper's segment
    # trending: growth = short rate / (long rate + prior), and the rates it came from
    growth: float | None = None
    short_window: str | None = None
    short_per_hour: float | None = None
    long_window: str | None = None
    long_per_hour: float | None = None
    # new arrivals: when the catalog first saw the item, what placed it (recency or embedding), and
    # for a personalised list why this item kept its place by recency
    added_at: str | None = None
    basis: str | None = None
    note: str | None = None
    rules: list[RuleRef] | None = None  # the merchandising rules that moved or placed the item


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


class Trending(_Answer):
    items: list[ScoredItem]  # by growth; score = growth
    category: str | None
    short_window: str
    long_window: str
    model_version: str | None
    degraded: bool  # Redis was unreachable: the last list read is served
    request_id: str


class NewArrivals(_Answer):
    # newest first (score = added time, epoch seconds), or re-ordered by the shopper's embedding
    items: list[ScoredItem]
    category: str | None
    user_id: str | None
    personalized: bool  # the shopper's model embedding re-ordered the list
    model_version: str | None
    degraded: bool
    request_id: str


class Shopper(_Answer):
    """A shopper's stored attributes (PUT/GET /v1/users/{user_id})."""

    user_id: str
    attributes: dict[str, Any]  # flat scalars: str, int, float, bool
    updated_at: str  # ISO-8601 UTC


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
