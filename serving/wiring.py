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
    from storage.model_registry_mongo import MongoModelRegistry
    from storage.mongo_client import open_mongo_client
    from storage.realtime_reader import RedisRealtimeReader
    from storage.retrain_requests import MongoRetrainRequests
    from storage.shoppers_mongo import MongoShopperStore

    closers: list[Any] = []
    try:
        # One client (one pool, one set of monitor threads) for every MongoDB adapter of this process.
        client = open_mongo_client(settings.mongo)
        closers.append(client.close)
        db = client[settings.mongo.database]
        store = MongoEventStore(db)
        registry = MongoModelRegistry(db, settings.model.artifact_cache_dir)
        retrain_requests = MongoRetrainRequests(db)
        experiments = MongoExperimentStore(db)
        impressions = MongoImpressionStore(db)
        shoppers = MongoShopperStore(db)
        catalog = MongoCatalogReader(db)
        rules = MongoRuleStore(db)
        producer = make_resilient_producer(settings.kafka, name="api")
        closers.append(lambda: producer.close(5.0))
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
