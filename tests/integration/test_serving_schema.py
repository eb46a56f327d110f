"""Property-based API fuzzing from the app's own OpenAPI document, against real servers: no 5xx."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from core.settings import Settings
from serving.app import create_app
from storage.model_registry import open_model_registry
from tests.integration.test_serving_api import AUTH, with_keys
from tests.unit.test_serving_helpers import model_files, tiny_loader


def test_no_server_errors_for_any_schema_valid_request(settings: Settings) -> None:
    """Up to 20 generated requests per operation (the lifespan runs once, against real servers)."""
    from schemathesis.python.asgi import shutdown_lifespans

    settings = with_keys(settings, cache_ttl_s=5)
    registry = open_model_registry(settings)
    version = registry.publish(model_files(), {})
    registry.promote(version, "schema test")
    registry.close()
    app = create_app(settings, loader=tiny_loader)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    try:
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 10
        for operation in operations:

            @given(case=operation.as_strategy())
            @hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: Any) -> None:
                response = case.call(headers=AUTH)
                label = f"{case.method} {case.formatted_path}"
                if response.status_code >= 500:
                    failures.append(f"{label}: {response.status_code} {response.text[:300]}")
                elif response.status_code >= 400 and case.path != "/readyz":
                    body = response.json()
                    if set(body.get("error", {})) != {"code", "message"}:
                        failures.append(f"{label}: error body {body}")

            check()
    finally:
        shutdown_lifespans()
    assert not failures, "\n".join(failures[:10])
