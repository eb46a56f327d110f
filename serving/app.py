"""The serving app factory: ``create_app(settings, adapters)`` builds no client.

The adapters come from the composition root (``serving.wiring.open_adapters`` in ``streamrec serve``,
the in-memory twins in unit tests); the lifespan builds the services over them, starts the background
pollers (model, popularity snapshots, replica sync, experiments) and the shadow worker, and closes the
adapters (the impression log among them) when the app stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from core.settings import Settings
from model.artifact_erasure import scrub_files
from serving import demo_page, openapi
from serving.adapters import ServingAdapters
from serving.admin import AdminService
from serving.admin_experiments import build_experiment_router
from serving.admin_rules import build_rules_router
from serving.auth import KeyRing
from serving.catalog import CatalogSnapshot
from serving.cold_start import ColdStart
from serving.discovery import DiscoveryService
from serving.errors import error_response, install_error_handlers
from serving.experiments import ExperimentHolder
from serving.ingest import IngestService
from serving.merchandising import Merchandiser, RulesHolder
from serving.metrics import ServingMetrics, multiprocess_dir
from serving.model_holder import ModelHolder
from serving.polling import stop_tasks
from serving.popularity import RealtimeSnapshots
from serving.replica_sync import DEFAULT_POLL_S, ReplicaSyncer
from serving.request_id import RequestIdMiddleware
from serving.rerank_route import build_rerank_router
from serving.routes import build_router
from serving.schema_route import build_schema_router
from serving.segment_fallback import SegmentFallback
from serving.service import ReadService
from serving.shadow import ShadowRunner
from serving.shoppers import ShopperService, build_shopper_router
from storage.experiment_admin import ExperimentAdmin

log = logging.getLogger(__name__)
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for bodies over ``limit`` bytes, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(scope, receive, send)
                return
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Any, send: Any) -> None:
        response = error_response(
            413, "payload_too_large", f"request body is larger than serving.max_body_bytes={self.limit}"
        )
        await response(scope, receive, send)


def create_app(
    settings: Settings,
    adapters: ServingAdapters,
    *,
    snapshot_ttl_s: float = 2.0,
    sync_poll_s: float = DEFAULT_POLL_S,
) -> FastAPI:
    """The API over ``adapters`` (built by the caller; the app closes them when its lifespan ends)."""
    metrics_registry = CollectorRegistry()
    metrics = ServingMetrics(metrics_registry)
    metrics.count_producer_rebuilds(lambda: adapters.producer.health().rebuilds)
    impression_log = adapters.impression_log
    metrics.count_impressions(impression_log.counts if impression_log is not None else None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        reader = adapters.realtime
        store = adapters.events
        kafka = adapters.producer
        holder = ModelHolder(adapters.registry, adapters.loader, metrics, store)
        snapshots = RealtimeSnapshots(
            reader, ttl_s=snapshot_ttl_s, depth=max(1000, settings.serving.max_k * 2)
        )
        exp_settings = settings.serving.experiments
        experiments = ExperimentHolder(
            adapters.experiments,
            adapters.registry,
            adapters.loader,
            metrics,
            champion=lambda: holder.current,
            shadow_version=exp_settings.shadow_version,
        )
        shadow = None
        if exp_settings.shadow_version is not None:
            shadow = ShadowRunner(
                settings, exp_settings.shadow_version, experiments.model, snapshots, impression_log, metrics
            )
            shadow.start()
        catalog = CatalogSnapshot(adapters.catalog)
        app.state.catalog = catalog
        # New catalog items get content embeddings in every model the holder loads (serving.cold_start).
        app.state.cold_start = ColdStart(catalog, settings.serving.cold_start_max_items, metrics.cold_items)
        holder.loader = app.state.cold_start.wrap(holder.loader)
        rules = RulesHolder(adapters.rules)
        with contextlib.suppress(Exception):
            await rules.refresh()  # the first answers already follow the stored rules (cheap: one read)
        merchandiser = Merchandiser(catalog, rules)
        app.state.rules = rules
        app.state.merchandiser = merchandiser
        app.state.holder = holder
        app.state.snapshots = snapshots
        app.state.experiments = experiments
        app.state.shadow = shadow
        app.state.read = ReadService(
            settings,
            reader,
            holder,
            snapshots,
            metrics,
            experiments=experiments,
            impression_log=impression_log,
            shadow=shadow,
            merchandiser=merchandiser,
            segments=SegmentFallback(adapters.shoppers),
        )
        app.state.discovery = DiscoveryService(
            settings,
            reader,
            holder,
            snapshots,
            metrics,
            impression_log=impression_log,
            merchandiser=merchandiser,
        )
        app.state.ingest = IngestService(settings, kafka)
        app.state.admin = AdminService(
            holder,
            reader,
            store,
            adapters.retrain_requests,
            snapshots=snapshots,
            ingest_health=kafka.probe,
            impressions=adapters.impressions,
            shoppers=adapters.shoppers,
        )
        app.state.shoppers = ShopperService(adapters.shoppers)
        app.state.experiment_admin = ExperimentAdmin(
            experiments=adapters.experiments,
            registry=adapters.registry,
            impressions=adapters.impressions,
            events=store,
            erased_users=store.erased_users,
            scrub=scrub_files,
            retention_s=settings.serving.impressions.retention_days * 86400.0,
        )
        syncer = ReplicaSyncer(reader, snapshots, holder)
        app.state.replica_sync = syncer
        tasks = [
            asyncio.create_task(holder.run(settings.serving.model_poll_s), name="model-poll"),
            asyncio.create_task(snapshots.run(), name="snapshot-refresh"),
            asyncio.create_task(syncer.run(sync_poll_s), name="replica-sync"),
            asyncio.create_task(experiments.run(exp_settings.poll_s), name="experiments-poll"),
            asyncio.create_task(catalog.run(settings.serving.catalog_poll_s), name="catalog-poll"),
            asyncio.create_task(rules.run(settings.serving.catalog_poll_s), name="rules-poll"),
        ]
        gc.freeze()  # see ModelHolder.swap: the app's own objects live as long as the process
        log.info("event=serving_started host=%s port=%s", settings.serving.host, settings.serving.port)
        try:
            yield
        finally:
            await stop_tasks(tasks)
            if shadow is not None:
                # Before the impression log closes: its last shadow impression can still be offered.
                await asyncio.to_thread(shadow.stop, 2.0)
            await adapters.aclose()
            if multiprocess_dir() is not None:
                # The worker's live gauges (model version) leave the multiprocess files with it.
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(
        title="streamrec",
        version="1",
        description="Real-time recommendations from a Kafka-fed event stream.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = KeyRing.from_settings(settings.serving)
    app.state.metrics = metrics
    app.state.recent_users = adapters.recent_users
    install_error_handlers(app)
    app.include_router(build_router(settings.serving.public_read))
    app.include_router(build_experiment_router())
    app.include_router(build_rules_router())
    app.include_router(build_rerank_router(settings.serving.public_read))
    app.include_router(build_shopper_router())
    app.include_router(build_schema_router())
    if settings.serving.demo_page:
        app.include_router(demo_page.router)
    openapi.install(app, settings.serving)
    from prometheus_fastapi_instrumentator import Instrumentator

    instrumentator = Instrumentator(registry=metrics_registry, excluded_handlers=["/metrics"]).instrument(app)
    if multiprocess_dir() is None:
        instrumentator.expose(app, include_in_schema=False)
    else:
        # The instrumentator's own multiprocess exposition would drop the pulled counts.
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        def metrics_endpoint(_request: Any) -> Response:  # reads files: run in the threadpool
            return Response(generate_latest(metrics.exposition_registry()), media_type=CONTENT_TYPE_LATEST)

        app.add_route("/metrics", metrics_endpoint, include_in_schema=False)
    app.add_middleware(BodyLimitMiddleware, limit=settings.serving.max_body_bytes)  # type: ignore[arg-type]
    # Added last, so outermost: the 413 above carries the request id too.
    app.add_middleware(RequestIdMiddleware)
    return app
