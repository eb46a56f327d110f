"""Admin routes of the merchandising rules, behind the admin key: ``/v1/admin/rules`` and the earlier
versions at ``/v1/admin/rules-history`` (a path of its own, not under ``/v1/admin/rules/{rule_id}``).

Each change writes a new rules version (storage.merch_rules); this replica takes it at once, the
others within ``serving.catalog_poll_s`` (their poll), so every endpoint follows it within 2 s.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymongo.errors import PyMongoError
from starlette.responses import Response

from core.merch_rules import Condition, Rule, RuleKind, RuleSet
from serving.auth import auth_first, require
from serving.deps import SettingsDep
from serving.errors import ApiError
from serving.merchandising import RulesHolder
from serving.responses import FastJSONResponse
from serving.schemas import errors
from serving.service_errors import Conflict, NotFound, Unavailable
from storage.merch_rules import RuleExists, TooManyRules, UnknownRule

log = logging.getLogger(__name__)
T = TypeVar("T")
RuleIdPath = Annotated[str, Path(min_length=1, max_length=128, description="the rule's id")]


class RuleIn(BaseModel):
    """A new rule (see core.merch_rules for what each kind does and needs)."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str | None = Field(default=None, description="your id for it; generated when absent")
    kind: RuleKind
    condition: Condition | None = None
    item_ids: list[str] | None = None
    factor: float | None = Field(default=None, description="boost, bury: > 1")
    item_id: str | None = Field(default=None, description="pin: the item")
    position: int | None = Field(default=None, description="pin: 1-based, at most serving.max_k")
    max_per_category: int | None = Field(
        default=None, description="diversity: at most this many per category"
    )
    description: str | None = None


class RulesOut(BaseModel):
    version: int = Field(description="bumped by every change; 0 when no rule was ever stored")
    rules: list[Rule]


class RuleChangeOut(BaseModel):
    version: int
    rule: Rule | None = None
    removed: str | None = None


class HistoryEntry(BaseModel):
    version: int
    rules: list[Rule]
    change: dict[str, Any]


class HistoryOut(BaseModel):
    versions: list[HistoryEntry]


def _holder(request: Request) -> RulesHolder:
    holder: RulesHolder | None = getattr(request.app.state, "rules", None)
    if holder is None:
        raise Unavailable("starting", "the server is still starting")
    return holder


HolderDep = Annotated[RulesHolder, Depends(_holder)]


async def _run(action: str, call: Callable[..., T], *args: Any) -> T:
    try:
        return await asyncio.to_thread(call, *args)
    except RuleExists as exc:
        raise Conflict("rule_exists", str(exc)) from exc
    except TooManyRules as exc:
        raise Conflict("too_many_rules", str(exc)) from exc
    except UnknownRule as exc:
        raise NotFound("unknown_rule", f"no active rule has the id {exc.args[0]!r}") from exc
    except (PyMongoError, ConnectionError, TimeoutError) as exc:
        log.warning("event=rules_admin_failed action=%s error=%s", action, exc)
        raise Unavailable("mongodb_unavailable", f"cannot {action}: MongoDB is unavailable ({exc})") from exc


def _dump(rules: RuleSet) -> dict[str, Any]:
    return {
        "version": rules.version,
        "rules": [r.model_dump(mode="json", exclude_none=True) for r in rules.rules],
    }


def to_rule(body: RuleIn, max_k: int) -> Rule:
    """The stored rule, or a 422 saying what is wrong (a pin beyond the longest list serving answers
    could never be shown)."""
    data = body.model_dump(exclude_none=True)
    data.setdefault("rule_id", f"{body.kind}-{uuid.uuid4().hex[:8]}")
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        raise ApiError(422, "invalid_rule", f"{where}: {message}" if where else message) from None
    if rule.kind == "pin" and (rule.position or 0) > max_k:
        raise ApiError(
            422,
            "pin_outside_k",
            f"pin position {rule.position} is outside every list serving answers (serving.max_k={max_k})",
        )
    return rule


async def list_rules(holder: HolderDep) -> Response:
    return FastJSONResponse(_dump(await _run("read the rules", holder.store.current)))


async def add_rule(holder: HolderDep, settings: SettingsDep, body: RuleIn) -> Response:
    rule = to_rule(body, settings.serving.max_k)
    rules = await _run("store the rule", holder.store.add, rule)
    holder.current = rules if rules.version > holder.current.version else holder.current
    stored = next(r for r in rules.rules if r.rule_id == rule.rule_id)
    body_out = {"version": rules.version, "rule": stored.model_dump(mode="json", exclude_none=True)}
    return FastJSONResponse(body_out, status_code=201)


async def remove_rule(holder: HolderDep, rule_id: RuleIdPath) -> Response:
    rules = await _run("remove the rule", holder.store.remove, rule_id)
    holder.current = rules if rules.version > holder.current.version else holder.current
    return FastJSONResponse({"version": rules.version, "removed": rule_id})


async def rules_history(
    holder: HolderDep, limit: Annotated[int, Query(ge=1, le=1000, description="newest versions")] = 50
) -> Response:
    found = await _run("read the rules history", holder.store.history, limit)
    versions = [
        {
            "version": v["version"],
            "rules": [r.model_dump(mode="json", exclude_none=True) for r in v["rules"]],
            "change": {k: (x.isoformat() if hasattr(x, "isoformat") else x) for k, x in v["change"].items()},
        }
        for v in found
    ]
    return FastJSONResponse({"versions": versions})


def build_rules_router() -> APIRouter:
    router = APIRouter(
        dependencies=[Depends(require("admin"))], tags=["admin"], route_class=auth_first("admin")
    )
    router.add_api_route(
        "/v1/admin/rules",
        list_rules,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": RulesOut}, **errors(400, 401, 403, 413, 503)},
        summary="The active merchandising rules and their version",
    )
    router.add_api_route(
        "/v1/admin/rules",
        add_rule,
        methods=["POST"],
        response_model=None,
        status_code=201,
        responses={201: {"model": RuleChangeOut}, **errors(400, 401, 403, 409, 413, 422, 503)},
        summary="Add a rule (boost, bury, pin, block, diversity): a new version, live within 2 s",
    )
    router.add_api_route(
        "/v1/admin/rules-history",
        rules_history,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": HistoryOut}, **errors(400, 401, 403, 413, 422, 503)},
        summary="Earlier rule versions, newest first, with the change that made each",
    )
    router.add_api_route(
        "/v1/admin/rules/{rule_id}",
        remove_rule,
        methods=["DELETE"],
        response_model=None,
        responses={200: {"model": RuleChangeOut}, **errors(400, 401, 403, 404, 413, 422, 503)},
        summary="Remove a rule: a new version without it",
    )
    return router
