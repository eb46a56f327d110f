"""What the serving app is handed: every client and port it uses, already built.

``create_app(settings, adapters)`` builds no client itself: ``serving.wiring.open_adapters`` builds
the production ones from settings (the ``serve`` entry point calls it), unit tests pass the in-memory
twins. The app owns what it is given: its lifespan runs ``aclose`` when it stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.model_holder import Loader
from serving.ports import EventProducer, EventStorePort
from storage.catalog_reader import CatalogReader, InMemoryCatalogReader
from storage.experiments import ExperimentStore, InMemoryExperimentStore
from storage.impression_log import ImpressionLog
from storage.impressions import ImpressionStore, InMemoryImpressionStore
from storage.kafka_producer import ResilientProducer
from storage.merch_rules import InMemoryRuleStore, RuleStore
from storage.model_registry import ModelRegistry
from storage.realtime_reader import RealtimeReader
from storage.retrain_requests import RetrainRequests
from storage.shoppers import InMemoryShopperStore, ShopperStore

log = logging.getLogger(__name__)


class RecentUsers(Protocol):
    """For the demo page's user picker."""

    def recent_users(self, limit: int) -> list[str]:
        """Distinct user ids of the newest events, newest first."""
        ...


@dataclass
class ServingAdapters:
    registry: ModelRegistry
    realtime: RealtimeReader
    events: EventStorePort
    retrain_requests: RetrainRequests
    producer: ResilientProducer
    # files + registry record -> a validated model (serving.model_loader.make_loader in production)
    loader: Loader
    # None: the demo page's user picker answers 503 (nothing to list recent users from).
    recent_users: RecentUsers | None = None
    # A/B experiments (admin writes them, every request reads the running one) and the stored
    # impressions the online report reads.
    experiments: ExperimentStore = field(default_factory=InMemoryExperimentStore)
    impressions: ImpressionStore = field(default_factory=InMemoryImpressionStore)
    # Shopper attributes (PUT /v1/users/{user_id}); erased with the shopper.
    shoppers: ShopperStore = field(default_factory=InMemoryShopperStore)
    # Where every served list is logged (serving.impressions); None when
    # serving.impressions.enabled is false. Production: storage.impression_log.KafkaImpressionLog.
    impression_log: ImpressionLog | None = None
    # Catalog changes, polled into serving.catalog.CatalogSnapshot (MongoCatalogReader in production).
    catalog: CatalogReader = field(default_factory=InMemoryCatalogReader)
    # Merchandising rules with versions (admin writes them, serving.merchandising polls them).
    rules: RuleStore = field(default_factory=InMemoryRuleStore)
    # Called in reverse order by ``aclose``; each may return an awaitable.
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def aclose(self) -> None:
        closers, self.closers = self.closers, []
        for close in reversed(closers):
            try:
                result = close()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                log.warning("event=close_failed error=%s", exc)


def resilient(producer: EventProducer, name: str = "api") -> ResilientProducer:
    """A ``ResilientProducer`` over an already built producer (an in-memory twin): it is never rebuilt."""
    return ResilientProducer(lambda _error_cb: producer, name=name)
