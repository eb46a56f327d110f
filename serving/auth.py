"""API-key auth with three scopes. ``admin`` implies every scope; ``read`` may be public."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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


def require(scope: Scope):  # type: ignore[no-untyped-def]
    """FastAPI dependency factory: 401 without a valid key, 403 with a key lacking ``scope``."""

    async def check(
        request: Request,
        api_key: str | None = Depends(_api_key),
        bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> None:
        ring: KeyRing = request.app.state.keyring
        if scope == "read" and ring.public_read:
            return
        key = api_key or (bearer.credentials if bearer else None)
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

    return check
