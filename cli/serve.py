"""Command `streamrec serve`: the HTTP API under uvicorn."""

from __future__ import annotations

import typer

from cli.app import app


def app_factory():  # type: ignore[no-untyped-def]
    """Serving's composition root, run in each uvicorn worker: Settings from the environment, the
    clients from Settings (``serving.wiring``), the app over them (it closes them when it stops)."""
    from cli.context import configure_logging, load_settings
    from serving.app import create_app
    from serving.bounded_shutdown import BoundedShutdown
    from serving.wiring import open_adapters

    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        import faiss

        # One query per request: OpenMP fan-out only adds spin-waiting contention between requests.
        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    return BoundedShutdown(create_app(settings, open_adapters(settings)), settings.serving.shutdown_grace_s)


@app.command("serve")
def serve(
    host: str | None = typer.Option(None, help="Bind address (default STREAMREC_SERVING__HOST)."),
    port: int | None = typer.Option(None, help="Port (default STREAMREC_SERVING__PORT)."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes; each loads its own model copy."),
) -> None:
    """Serve recommendations, ingest and admin endpoints (OpenAPI at /docs).

    The model is polled from the registry every STREAMREC_SERVING__MODEL_POLL_S and hot-swapped.
    """
    import os
    import shutil

    import uvicorn

    from cli.context import configure_logging, load_settings
    from serving.metrics import prepare_multiprocess_dir

    settings = load_settings()
    configure_logging(settings.log_level)
    # Before the workers are spawned: they inherit the environment, and prometheus_client reads it
    # when it is imported.
    metrics_dir, ours = prepare_multiprocess_dir(workers, os.environ)
    try:
        uvicorn.run(
            "cli.serve:app_factory",
            factory=True,
            host=host or settings.serving.host,
            port=port if port is not None else settings.serving.port,
            workers=workers,
            log_level=settings.log_level.lower(),
            access_log=False,
            # uvicorn's own text handlers would bypass the JSON lines configure_logging sets up.
            log_config=None,
            # Keep-alive long enough for load balancers and benchmark clients that reuse connections.
            timeout_keep_alive=30,
            # Connections still open this long after SIGTERM are closed; the app's own clean-up is
            # bounded by as long again (serving.bounded_shutdown).
            timeout_graceful_shutdown=int(max(1, settings.serving.shutdown_grace_s)),
        )
    finally:
        if ours and metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
