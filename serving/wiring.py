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
    """Clients for Redis, MongoDB (events, retrain requests, model registry, experiments,
    impressions) and Kafka (ingest, and the impression log when ``serving.impressions.enabled``).

    Nothing here waits for a server (the clients connect in the background or on first use), so a
    server that is down does not stop the app from starting: it starts degraded and ``/readyz`` says
    why. The returned adapters
    are open; the app they are handed to closes them when it stops. ``loader`` replaces the artifact
    loader (tests serve a tiny model).
    """
    from serving.model_loader import make_loader
    from storage.catalog_reader import MongoCatalogReader
    from storage.event_store import MongoEventStore
    from storage.experiments_mongo import MongoExperimentStore
    from storage.impression_log import KafkaImpressionLog
    from storage.impressions_mongo import MongoImpressionStore
    from storage.kafka import make_resilient_producer
    from storage.merch_rules import MongoRuleStore
    from storage.model_registry_mongo import open_model_registry
    from storage.realtime_reader import RedisRealtimeReader
    from storage.retrain_requests import MongoRetrainRequests
    from storage.shoppers_mongo import MongoShopperStore

    closers: list[Any] = []
    try:
        store = MongoEventStore.from_settings(settings.mongo)
        closers.append(store.close)
        registry = open_model_registry(settings)
        closers.append(registry.close)
        retrain_requests = MongoRetrainRequests.from_settings(settings.mongo)
        closers.append(retrain_requests.close)
        experiments = MongoExperimentStore.from_settings(settings.mongo)
        closers.append(experiments.close)
        impressions = MongoImpressionStore.from_settings(settings.mongo)
        closers.append(impressions.close)
        shoppers = MongoShopperStore.from_settings(settings.mongo)
        closers.append(shoppers.close)
        producer = make_resilient_producer(settings.kafka, name="api")
        closers.append(lambda: producer.close(5.0))
        catalog = MongoCatalogReader.from_settings(settings.mongo)
        closers.append(catalog.close)
        rules = MongoRuleStore.from_settings(settings.mongo)
        closers.append(rules.close)
        impression_log = None
        if settings.serving.impressions.enabled:
            # Its own producer and sender thread: impressions never queue behind (or slow) ingest.
            impression_log = KafkaImpressionLog.from_settings(settings.kafka, settings.serving.impressions)
            closers.append(lambda: impression_log.close(5.0))
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
        retrain_requests=retrain_requests,
        producer=producer,
        loader=loader or make_loader(settings),
        # The event store answers the demo page's user list: the page opens no connection of its own.
        recent_users=store,
        experiments=experiments,
        impressions=impressions,
        shoppers=shoppers,
        impression_log=impression_log,
        catalog=catalog,
        rules=rules,
        closers=closers,
    )
