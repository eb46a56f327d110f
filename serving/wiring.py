"""Serving's composition root: the production adapters, built from settings.

Only the entry point (``cli/serve.py``, once per uvicorn worker) and tests that run against real
servers call this; the rest of ``serving`` receives a ``ServingAdapters`` and never builds a client.
"""

from __future__ import annotations

from typing import Any

from core.settings import Settings
from serving.adapters import ServingAdapters
from serving.model_holder import Loader


def open_adapters(settings: Settings, *, loader: Loader | None = None) -> ServingAdapters:
    """Clients for Redis, MongoDB (events, retrain requests, model registry) and Kafka.

    Nothing here waits for a server (the clients connect in the background or on first use), so a
    server that is down does not stop the app from starting: it starts degraded and ``/readyz`` says
    why. The returned adapters
    are open; the app they are handed to closes them when it stops. ``loader`` replaces the artifact
    loader (tests serve a tiny model).
    """
    from serving.demo_page import MongoRecentUsers
    from serving.model_loader import make_loader
    from serving.ports import MongoRetrainRequests
    from storage.event_store import MongoEventStore
    from storage.kafka import make_resilient_producer
    from storage.model_registry import open_model_registry
    from storage.realtime_reader import RedisRealtimeReader

    closers: list[Any] = []
    try:
        store = MongoEventStore.from_settings(settings.mongo)
        closers.append(store.close)
        registry = open_model_registry(settings)
        closers.append(registry.close)
        producer = make_resilient_producer(settings.kafka, name="api")
        closers.append(lambda: producer.close(5.0))
        # Last: its close is a coroutine, and it is the one client never closed by the cleanup below.
        reader = RedisRealtimeReader(settings.redis)
        closers.append(reader.close)
    except BaseException:
        # A later client failed to build (a bad Kafka setting): close the ones already opened.
        for close in reversed(closers):
            close()
        raise
    return ServingAdapters(
        registry=registry,
        realtime=reader,
        events=store,
        retrain_requests=MongoRetrainRequests(store.db["retrain_requests"]),
        producer=producer,
        loader=loader or make_loader(settings),
        # Shares the event store's connection: the demo page opens none of its own.
        recent_users=MongoRecentUsers(store),
        closers=closers,
    )
