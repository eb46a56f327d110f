"""API-key auth with three scopes. ``admin`` implies every scope; ``read`` may be public."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.responses import Response

from core.settings import ServingSettings
from serving.errors import ApiError

Scope = Literal["read", "ingest", "admin"]
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


@dataclass(frozen=True)
class KeyRing:
    read: tuple[bytes, ...]
    ingest: tuple[bytes, ...]
    admin: tuple[bytes, ...]
    public_read: bool

    @classmethod
    def from_settings(cls, s: ServingSettings) -> KeyRing:
        def keys(values: list) -> tuple[bytes, ...]:
            return tuple(v.get_secret_value().encode() for v in values if v.get_secret_value())

        return cls(keys(s.api_keys_read), keys(s.api_keys_ingest), keys(s.api_keys_admin), s.public_read)

    def scopes_of(self, key: str) -> set[str]:
        raw = key.encode()
        found: set[str] = set()
        # Compare against every key (no early exit) so timing does not reveal which list matched.
        for scope, keys in (("read", self.read), ("ingest", self.ingest), ("admin", self.admin)):
            if any([hmac.compare_digest(raw, k) for k in keys]):
                found.add(scope)
        if "admin" in found:
            found |= {"read", "ingest"}
        return found


def authorize(ring: KeyRing, scope: Scope, key: str | None) -> None:
    """401 without a valid key, 403 with a key lacking ``scope``."""
    if scope == "read" and ring.public_read:
        return
    if not key:
        raise ApiError(
            401,
            "unauthorized",
            f"this endpoint needs an API key with scope '{scope}' in the X-API-Key header "
            "or an 'Authorization: Bearer' header",
            {"WWW-Authenticate": "Bearer"},
        )
    scopes = ring.scopes_of(key)
    if not scopes:
        raise ApiError(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})
    if scope not in scopes:
        raise ApiError(
            403, "forbidden", f"the API key has scope {sorted(scopes)} but this endpoint needs '{scope}'"
        )


def keyring_of(request: Request) -> KeyRing:
    """The app's keys (``create_app`` sets them when it builds the app)."""
    ring = getattr(request.app.state, "keyring", None)
    if not isinstance(ring, KeyRing):
        raise RuntimeError("app.state.keyring is not set: build the app with serving.app.create_app")
    return ring


def key_from_headers(request: Request) -> str | None:
    """The key as ``require`` reads it: X-API-Key first, else an ``Authorization: Bearer`` token.

    An Authorization header that is present but not ``Bearer <key>`` is refused (401), even beside a
    valid X-API-Key: a malformed credential is a client bug to report, not something to ignore, and
    the OpenAPI document's bearer scheme says so."""
    raw = request.headers.get("authorization")
    token = None
    if raw is not None:
        scheme, credentials = get_authorization_scheme_param(raw)
        if scheme.lower() != "bearer" or not credentials.strip():
            raise ApiError(
                401,
                "unauthorized",
                "the Authorization header must be 'Bearer <API key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        token = credentials
    return request.headers.get("x-api-key") or token


def require(scope: Scope):  # type: ignore[no-untyped-def]
    """FastAPI dependency factory (it also puts the security schemes into the OpenAPI document)."""

    async def check(
        request: Request,
        api_key: str | None = Depends(_api_key),
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> None:
        # The two dependencies document the schemes; the headers are read (and checked) here.
        authorize(keyring_of(request), scope, key_from_headers(request))

    return check


class AuthFirstRoute(APIRoute):
    """A route whose key is checked before its body is read: FastAPI parses (and may reject) the
    body before it resolves dependencies, which answered a bad body without a key with 422 instead
    of 401. The dependency from ``require`` still runs (and documents the security scheme); it
    repeats a check that costs a few HMAC comparisons."""

    scope: Scope = "admin"

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        inner = super().get_route_handler()
        scope = self.scope

        async def handler(request: Request) -> Response:
            authorize(keyring_of(request), scope, key_from_headers(request))
            return await inner(request)

        return handler


def auth_first(scope: Scope) -> type[APIRoute]:
    return type(f"AuthFirstRoute_{scope}", (AuthFirstRoute,), {"scope": scope})
