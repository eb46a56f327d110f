"""The MongoDB adapter of ``storage.tuned_configs.TunedConfigs``: collection ``model_tuned_configs``.

``_id`` comes from the registry's ``counters`` (``{_id: "tuned_config", seq}``) by an atomic ``$inc``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import DependencyUnavailable
from core.settings import Settings
from storage.tuned_configs import COLLECTION, TunedConfig, check_tuned, new_tuned_doc, tuned_from_doc

log = logging.getLogger(__name__)


@contextmanager
def _mongo_errors(action: str) -> Iterator[None]:
    from pymongo.errors import ConnectionFailure

    try:
        yield
    except ConnectionFailure as exc:
        raise DependencyUnavailable(f"MongoDB is unreachable while {action}: {exc}") from exc


class MongoTunedConfigs:
    def __init__(self, database: Any) -> None:
        self._docs = database[COLLECTION]
        self._counters = database["counters"]
        self._client: Any = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def record(self, tuned: dict[str, Any]) -> TunedConfig:
        from pymongo import ReturnDocument

        check_tuned(tuned)  # before a sequence number is spent on it
        with _mongo_errors("recording a tuned configuration"):
            counter = self._counters.find_one_and_update(
                {"_id": "tuned_config"},
                {"$inc": {"seq": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            doc = new_tuned_doc(int(counter["seq"]), dict(tuned))
            self._docs.insert_one(doc)
        log.info(
            "tuned_config_recorded seq=%d score=%.4f trials=%s", doc["_id"], doc["score"], doc.get("trials")
        )
        return tuned_from_doc(doc)

    def latest(self) -> TunedConfig | None:
        with _mongo_errors("reading the tuned configuration"):
            doc = self._docs.find_one({}, sort=[("_id", -1)])
        return None if doc is None else tuned_from_doc(doc)

    def list(self, limit: int = 20) -> list[TunedConfig]:
        if limit <= 0:
            return []
        with _mongo_errors("listing tuned configurations"):
            return [tuned_from_doc(d) for d in self._docs.find({}).sort("_id", -1).limit(limit)]


def open_tuned_configs(settings: Settings) -> MongoTunedConfigs:
    """On its own MongoClient (closed by ``close()``)."""
    from storage.mongo_client import open_mongo_client

    client = open_mongo_client(settings.mongo)
    store = MongoTunedConfigs(client[settings.mongo.database])
    store._client = client
    return store
