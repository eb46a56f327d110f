"""Serving's composition root opens one MongoDB client for all of its MongoDB adapters.

Nothing here reaches a server: every client connects in the background or on first use, so the
adapters are built against closed ports and only their wiring is inspected."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import SecretStr

from core.settings import KafkaSettings, MongoSettings, RedisSettings, Settings
from serving.wiring import open_adapters


def _mongo_client_of(adapter: Any) -> Any:
    for path in ("db", "_db"):
        if hasattr(adapter, path):
            return getattr(adapter, path).client
    return adapter._collection.database.client


def test_every_mongodb_adapter_shares_one_client() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        mongo=MongoSettings(uri=SecretStr("mongodb://127.0.0.1:9/?directConnection=true"), timeout_ms=200),
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),
        redis=RedisSettings(url=SecretStr("redis://127.0.0.1:9/0")),
    )
    adapters = open_adapters(settings)
    try:
        mongo = [
            adapters.registry,
            adapters.events,
            adapters.retrain_requests,
            adapters.experiments,
            adapters.impressions,
            adapters.shoppers,
            adapters.catalog,
            adapters.rules,
        ]
        clients = {id(_mongo_client_of(a)) for a in mongo}
        assert len(clients) == 1
        # The adapters' own close() must not close the shared client behind the others' backs.
        assert all(getattr(a, "_client", None) is None for a in mongo if hasattr(a, "_client"))
    finally:
        asyncio.run(adapters.aclose())
