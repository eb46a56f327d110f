"""One MongoDB collection on a client of its own: the base of the small adapters (impressions,
experiments) that each role opens from settings and closes with ``close()``."""

from __future__ import annotations

from typing import Any, Self

from core.settings import MongoSettings
from storage.mongo_client import open_mongo_client


class OwnedCollection:
    """``self._collection`` of ``database``; ``from_settings`` gives it its own client (a role that
    builds several adapters shares one instead: ``storage.mongo_client``)."""

    collection_name: str

    def __init__(self, database: Any) -> None:
        self._collection = database[self.collection_name]
        self._client: Any = None

    @classmethod
    def from_settings(cls, settings: MongoSettings) -> Self:
        """On its own MongoClient, closed by ``close()``."""
        client = open_mongo_client(settings)
        owned = cls(client[settings.database])
        owned._client = client
        return owned

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
