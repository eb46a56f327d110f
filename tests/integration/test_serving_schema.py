"""Property-based API fuzzing from the app's own OpenAPI document, against real servers.

The first test drives hypothesis through schemathesis' Python API (no 5xx, one error shape); the
second runs the schemathesis CLI with ``--checks all`` against a live uvicorn for a bounded time:
every status, content type, limit and ``additionalProperties`` the server enforces must be what the
document says. ``STREAMREC_SCHEMA_MAX_TIME_S`` lengthens that run (the default keeps it ~60 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis

# Imported here, at collection, rather than lazily by ``schemathesis.openapi.from_asgi`` mid-suite:
# pytest rewrites that plugin module on import, and CPython 3.11.7's ast.parse then failed once with
# "AST constructor recursion depth mismatch" (a CPython 3.11 bug in the AST recursion accounting).
import schemathesis.specs.openapi.schemas
import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from core.settings import Settings
from serving.app import create_app
from serving.wiring import open_adapters
from storage.model_registry_mongo import open_model_registry
from tests.integration.test_serving_api import AUTH, with_keys
from tests.unit.test_serving_helpers import ADMIN, model_files, tiny_loader
from tooling.devstack.processes import free_port


def test_no_server_errors_for_any_schema_valid_request(settings: Settings) -> None:
    """Up to 20 generated requests per operation (the lifespan runs once, against real servers)."""
    from schemathesis.python.asgi import shutdown_lifespans

    settings = with_keys(settings, cache_ttl_s=5)
    registry = open_model_registry(settings)
    version = registry.publish(model_files(), {})
    registry.promote(version, "schema test")
    registry.close()
    app = create_app(settings, open_adapters(settings, loader=tiny_loader))
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
                    if set(body.get("error", {})) != {"code", "message", "request_id"}:
                        failures.append(f"{label}: error body {body}")

            check()
    finally:
        shutdown_lifespans()
    assert not failures, "\n".join(failures[:10])


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn in a thread (a real HTTP server: schemathesis' CLI talks HTTP)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


SCHEMATHESIS_CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_TIME_S = int(os.environ.get("STREAMREC_SCHEMA_MAX_TIME_S", "45"))


@pytest.mark.timeout(MAX_TIME_S + 300)
def test_schemathesis_all_checks_pass(settings: Settings, tmp_path: Path) -> None:
    """``st run --checks all`` (examples, coverage, fuzzing and stateful phases), time-bounded."""
    max_time = MAX_TIME_S
    settings = with_keys(settings, cache_ttl_s=5)
    registry = open_model_registry(settings)
    registry.promote(registry.publish(model_files(), {}), "schema test")
    registry.close()
    app = create_app(settings, open_adapters(settings, loader=tiny_loader))
    with live_server(app) as base:
        deadline = time.monotonic() + 30
        while app.state.holder.current is None:
            assert time.monotonic() < deadline, "model not loaded"
            time.sleep(0.05)
        command = [
            str(Path(sys.executable).with_name("st")),
            # Per-operation expectations the document cannot carry (see the file's comments).
            "--config-file",
            str(SCHEMATHESIS_CONFIG),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"X-API-Key: {ADMIN}",
            "--max-time",
            str(max_time),
            "--workers",
            "1",
            "--seed",
            os.environ.get("STREAMREC_SCHEMA_SEED", "10"),
            "--suppress-health-check",
            "all",
            "--generation-database",
            "none",
            "--request-timeout",
            "10",
            "--no-color",
            "--output-truncate",
            "false",
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=max_time + 240, cwd=tmp_path, check=False
        )
    output = result.stdout + result.stderr
    report = Path(os.environ.get("STREAMREC_SCHEMA_REPORT", tmp_path / "schemathesis.txt"))
    report.write_text(output)
    # Generated values can be megabytes long: lines are clipped for the assertion message.
    clipped = "\n".join(line[:400] for line in output.splitlines()[-150:])
    assert result.returncode == 0, f"full output in {report}\n{clipped}"
