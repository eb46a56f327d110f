"""The hot-route helpers: one-call parameter validation, its OpenAPI entries, and LeanRoute."""

from __future__ import annotations

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from serving.fast_params import LeanRoute, openapi_parameters, parse_params

PATH = frozenset({"name"})


class Params(BaseModel):
    name: str = Field(min_length=2)
    n: int = Field(3, ge=1, description="how many")
    flag: bool = False


async def endpoint(request: Request) -> Response:
    p = parse_params(Params, request, PATH)
    return JSONResponse({"name": p.name, "n": p.n, "flag": p.flag})


def deny() -> None:
    raise HTTPException(403, "denied by a dependency")


def app_with(dependencies: list) -> TestClient:  # type: ignore[type-arg]
    app = FastAPI()
    app.router.add_api_route(
        "/things/{name}",
        endpoint,
        methods=["GET"],
        dependencies=dependencies,
        openapi_extra={"parameters": openapi_parameters(Params, PATH)},
        route_class_override=LeanRoute,
    )
    return TestClient(app)


def test_parameters_are_parsed_and_validated_like_fastapi() -> None:
    client = app_with([])
    assert client.get("/things/ab", params={"n": "7", "flag": "true", "other": "x"}).json() == {
        "name": "ab",
        "n": 7,
        "flag": True,
    }
    assert client.get("/things/ab", params=[("n", "1"), ("n", "5")]).json()["n"] == 5  # last wins
    bad = client.get("/things/a", params={"n": "0"})
    assert bad.status_code == 422
    locs = [tuple(err["loc"]) for err in bad.json()["detail"]]
    assert ("path", "name") in locs and ("query", "n") in locs


def test_a_route_with_dependencies_still_runs_them() -> None:
    assert app_with([Depends(deny)]).get("/things/ab").status_code == 403
    assert app_with([]).get("/things/ab").status_code == 200


def test_openapi_documents_the_model_fields() -> None:
    spec = app_with([]).get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/things/{name}"]["get"]["parameters"]}
    assert params["name"]["in"] == "path" and params["name"]["required"] is True
    assert params["n"]["in"] == "query" and params["n"]["required"] is False
    assert params["n"]["schema"]["minimum"] == 1 and params["n"]["description"] == "how many"
    assert params["flag"]["schema"]["type"] == "boolean"


def test_healthz_is_served_as_lean_as_the_recommendations_route() -> None:
    # The serving benchmark's ratio divides the recommendations rate by /healthz's: both must take
    # LeanRoute's direct path (no dependency walk), or the ceiling measures other machinery.
    from serving.routes import build_router

    routes = {r.path: r for r in build_router(public_read=True).routes if isinstance(r, APIRoute)}
    for path in ("/healthz", "/v1/users/{user_id}/recommendations"):
        route = routes[path]
        assert isinstance(route, LeanRoute), path
        dependant = route.dependant
        assert not (dependant.dependencies or dependant.query_params or dependant.path_params), path
