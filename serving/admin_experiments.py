"""Admin endpoints for online metrics, A/B experiments and shadow evaluation (admin API key).

``GET /v1/admin/online``, ``GET /v1/admin/shadow`` and ``/v1/admin/experiments...``: thin handlers
over ``storage.experiment_admin.ExperimentAdmin`` and ``storage.online_reads`` (what
``streamrec report|experiment ...`` run too). Every report reads MongoDB and computes in a worker
thread (``asyncio.to_thread``), never in the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from pydantic import ValidationError
from pymongo.errors import PyMongoError
from starlette.responses import Response

from core.duration import DURATION_PATTERN, parse_window, since_ago
from core.errors import ConfigError, StreamrecError
from core.experiments import NAME_PATTERN, Experiment
from core.log_context import current_request_id
from core.settings import Settings
from serving.auth import auth_first, require
from serving.deps import ExperimentAdminDep as AdminOps
from serving.deps import SettingsDep
from serving.errors import ApiError
from serving.experiment_schemas import (
    ExperimentDetailOut,
    ExperimentIn,
    ExperimentListOut,
    Metric,
    OnlineOut,
    PromoteIn,
    PromotionOut,
    PromotionRefusedOut,
    ShadowOut,
)
from serving.responses import FastJSONResponse
from serving.schemas import errors
from serving.service_errors import Conflict, NotFound, Rejected, Unavailable
from storage.experiment_admin import (
    ExperimentConflict,
    ExperimentError,
    ExperimentInvalid,
    ExperimentNotFound,
)
from storage.online_reads import clamp_since, read_online_report, read_shadow_report

log = logging.getLogger(__name__)
T = TypeVar("T")

# Not a pattern the server enforces: an id it does not know (whatever its form) is a 404.
ExperimentId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        description="the experiment's id",
        json_schema_extra={"pattern": NAME_PATTERN},
    ),
]
Since = Annotated[
    str,
    Query(
        min_length=1,
        max_length=24,
        description="how far back: 30m, 24h, 7d (no further than the impressions are kept)",
        json_schema_extra={"pattern": DURATION_PATTERN},
    ),
]
By = Literal["model_version", "variant", "surface", "position"]


def _since(settings: Settings, text: str) -> tuple[datetime, datetime]:
    try:
        seconds = parse_window(text)
    except ConfigError as exc:
        raise ApiError(422, "invalid_request", f"since: {exc}") from None
    now = datetime.now(UTC)
    retention_s = settings.serving.impressions.retention_days * 86400.0
    return clamp_since(since_ago(seconds, now), retention_s, now), now


async def _run(action: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` in a worker thread; experiment refusals become API errors, MongoDB failures a 503
    (anything else is a bug: the app's handler answers 500 and logs it)."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except ExperimentInvalid as exc:
        raise Rejected(exc.code, exc.message) from exc
    except ExperimentNotFound as exc:
        raise NotFound(exc.code, exc.message) from exc
    except ExperimentConflict as exc:
        raise Conflict(exc.code, exc.message) from exc
    except ExperimentError as exc:  # a kind added later: refused as a conflict, never a 500
        raise Conflict(exc.code, exc.message) from exc
    except (
        PyMongoError,
        StreamrecError,
        ConnectionError,
        TimeoutError,
    ) as exc:  # MongoDB (or a twin's outage)
        log.warning("event=experiment_admin_failed action=%s error=%s", action, exc)
        raise Unavailable("mongodb_unavailable", f"cannot {action}: MongoDB is unavailable ({exc})") from exc


async def online(
    ops: AdminOps, settings: SettingsDep, since: Since = "24h", by: By = "model_version"
) -> Response:
    start, now = _since(settings, since)
    report = await _run(
        "read the online report",
        read_online_report,
        ops.impressions,
        ops.events,
        since=start,
        by=by,
        until=now,
    )
    return FastJSONResponse(report.to_dict())


async def shadow(ops: AdminOps, settings: SettingsDep, since: Since = "24h") -> Response:
    start, now = _since(settings, since)
    report = await _run(
        "read the shadow report",
        read_shadow_report,
        ops.impressions,
        ops.events,
        since=start,
        window_s=settings.consumer.attribution.window_s,
        until=now,
    )
    return FastJSONResponse(report.to_dict())


def _experiment(body: ExperimentIn) -> Experiment:
    try:
        return Experiment(
            experiment_id=body.experiment_id,
            variants=[v.to_variant() for v in body.variants],
            control=body.control,
            surfaces=body.surfaces,
            description=body.description,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        raise ApiError(422, "invalid_experiment", err["msg"].removeprefix("Value error, ")) from None


def _dump(experiment: Experiment) -> dict[str, Any]:
    return experiment.model_dump(mode="json")


async def create_experiment(ops: AdminOps, body: ExperimentIn) -> Response:
    created = await _run("create the experiment", ops.create, _experiment(body))
    return FastJSONResponse(_dump(created), status_code=201)


async def list_experiments(ops: AdminOps) -> Response:
    found = await _run("list experiments", ops.list)
    return FastJSONResponse({"experiments": [_dump(e) for e in found]})


async def show_experiment(ops: AdminOps, experiment_id: ExperimentId, metric: Metric = "ctr") -> Response:
    experiment, report = await _run("read the experiment", ops.report, experiment_id, metric)
    return FastJSONResponse({"experiment": _dump(experiment), "report": report.to_dict()})


async def stop_experiment(ops: AdminOps, experiment_id: ExperimentId) -> Response:
    return FastJSONResponse(_dump(await _run("stop the experiment", ops.stop, experiment_id)))


async def promote_experiment(
    ops: AdminOps, experiment_id: ExperimentId, body: PromoteIn | None = None
) -> Response:
    body = body or PromoteIn()
    try:
        promotion = await _run(
            "promote the variant",
            ops.promote,
            experiment_id,
            body.variant,
            force=body.force,
            metric=body.metric,
            decided_by="api",
        )
    except Conflict as exc:
        refusal = exc.__cause__
        if not isinstance(refusal, ExperimentConflict) or refusal.report is None:
            raise
        # The refusal carries the report, so the caller sees why without another request.
        error = {"code": exc.code, "message": exc.message, "request_id": current_request_id()}
        return FastJSONResponse({"error": error, "report": refusal.report}, status_code=409)
    previous = promotion.previous_version
    return FastJSONResponse(
        {
            "experiment": _dump(promotion.experiment),
            "version": str(promotion.record.version),
            "previous_version": None if previous is None else str(previous),
        }
    )


def build_experiment_router() -> APIRouter:
    """The routes, each behind the admin key (checked before any body is read)."""
    router = APIRouter(
        dependencies=[Depends(require("admin"))],
        tags=["experiments"],
        route_class=auth_first("admin"),
    )
    router.add_api_route(
        "/v1/admin/online",
        online,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": OnlineOut}, **errors(400, 401, 403, 413, 422, 503)},
        summary="Online metrics: impressions, CTR, add-to-cart and conversion rates with 95% intervals",
    )
    router.add_api_route(
        "/v1/admin/shadow",
        shadow,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": ShadowOut}, **errors(400, 401, 403, 413, 422, 503)},
        summary="Shadow evaluation: was the shopper's next click or purchase in the candidate's list?",
    )
    router.add_api_route(
        "/v1/admin/experiments",
        create_experiment,
        methods=["POST"],
        response_model=None,
        status_code=201,
        responses={201: {"model": Experiment}, **errors(400, 401, 403, 409, 413, 422, 503)},
        summary="Start an A/B experiment (409 when the id exists or its surface is taken)",
    )
    router.add_api_route(
        "/v1/admin/experiments",
        list_experiments,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": ExperimentListOut}, **errors(400, 401, 403, 413, 503)},
        summary="Every experiment, newest first",
    )
    router.add_api_route(
        "/v1/admin/experiments/{experiment_id}",
        show_experiment,
        methods=["GET"],
        response_model=None,
        responses={200: {"model": ExperimentDetailOut}, **errors(400, 401, 403, 404, 413, 422, 503)},
        summary="One experiment and its report",
    )
    router.add_api_route(
        "/v1/admin/experiments/{experiment_id}/stop",
        stop_experiment,
        methods=["POST"],
        response_model=None,
        responses={200: {"model": Experiment}, **errors(400, 401, 403, 404, 413, 422, 503)},
        summary="Stop splitting traffic (serving drops it within serving.experiments.poll_s)",
    )
    router.add_api_route(
        "/v1/admin/experiments/{experiment_id}/promote",
        promote_experiment,
        methods=["POST"],
        response_model=None,
        responses={
            200: {"model": PromotionOut},
            409: {"model": PromotionRefusedOut, "description": "not promoted: the reason, with the report"},
            **errors(400, 401, 403, 404, 413, 422, 503),
        },
        summary="Make the winning variant's model version champion, recording the online evidence",
    )
    return router
