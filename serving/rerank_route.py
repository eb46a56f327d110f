"""The HTTP side of POST /v1/users/{user_id}/rerank: the body, its checks, the response shape."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic_core import PydanticCustomError
from starlette.responses import Response

from core.event_schema import ID_PATTERN
from core.events import _check_id
from serving.auth import require
from serving.deps import ReadDep
from serving.errors import ApiError
from serving.merch_params import MerchDep
from serving.merchandising import NO_MERCH
from serving.rerank import MAX_CANDIDATES, distinct
from serving.rerank_service import RerankQuery, rerank_for
from serving.responses import FastJSONResponse
from serving.schemas import RULES_DOC, ExperimentFields, RuleRef, errors

# The pattern documents the id rule; core.events._check_id enforces it and words the reason.
CandidateId = Annotated[str, Field(min_length=1, max_length=256, json_schema_extra={"pattern": ID_PATTERN})]
UserId = Annotated[str, Path(min_length=1, max_length=256)]


class RerankIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_ids: list[CandidateId] = Field(
        max_length=MAX_CANDIDATES,
        description=f"the list to order (a category page, search results): at most {MAX_CANDIDATES} "
        "ids; a repeated id is ranked once, at its first place",
    )
    drop_unknown: StrictBool = Field(
        default=False,
        description="false: ids the model cannot score follow the ranked ones, in the given order; "
        "true: they are left out of items (unknown_item_ids lists them either way)",
    )


class RerankReason(BaseModel):
    kind: Literal["personalized", "session", "similar_to", "popular", "unknown", "pinned"] = Field(
        description="as for recommendations; 'unknown': the model cannot score this id (a new item, "
        "or not an item it knows), kept in the given order after the ranked ones"
    )
    item_id: str | None = Field(default=None, description="for similar_to: the item this result resembles")
    rules: list[RuleRef] | None = Field(default=None, description=RULES_DOC)


class RerankItem(BaseModel):
    item_id: str
    score: float | None = Field(
        description="comparable only within one reason kind; null for unknown ids; the list order is "
        "the ranking"
    )
    reason: RerankReason


class RerankOut(ExperimentFields):
    user_id: str
    items: list[RerankItem] = Field(description="every distinct candidate (less unknown ones if dropped)")
    unknown_item_ids: list[str] = Field(description="the candidates the model could not score")
    unknown_dropped: bool = Field(description="true when unknown ids were left out of items")
    model_version: str | None
    degraded: bool = Field(description="true when the shopper's recent events could not be read (Redis)")
    request_id: str = Field(description="also the impression_id of the impression this list is logged as")


def _problem(item_id: str) -> str | None:
    try:
        _check_id(item_id)
    except PydanticCustomError as exc:
        return exc.message()
    except ValueError as exc:
        return str(exc)
    return None


async def rerank(read: ReadDep, user_id: UserId, body: RerankIn, merch: MerchDep = NO_MERCH) -> Response:
    for index, item_id in enumerate(body.item_ids):
        if (problem := _problem(item_id)) is not None:
            raise ApiError(422, "invalid_request", f"item_ids.{index}: {problem}")
    query = RerankQuery(user_id, distinct(body.item_ids), body.drop_unknown, merch)
    return FastJSONResponse(await rerank_for(read, query))


def build_rerank_router(public_read: bool) -> APIRouter:
    router = APIRouter()
    router.add_api_route(
        "/v1/users/{user_id}/rerank",
        rerank,
        methods=["POST"],
        response_model=None,
        responses={
            200: {"model": RerankOut},
            **errors(400, *(() if public_read else (401, 403)), 413, 422),
        },
        dependencies=[] if public_read else [Depends(require("read"))],
        tags=["recommendations"],
        summary="Order a given list of items (a category page, search results) for this shopper",
    )
    return router
