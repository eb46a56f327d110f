"""How every MongoDB client is opened; a role that builds several adapters opens one and shares it.

pymongo's pool is per client and each client runs its own monitor, round-trip-time and cursor-reaper
threads per server. A role that opened a client per adapter (serving had eight) held eight pools of
connections against the server's connection limit, times workers and replicas, and about 24
background threads waking on the serving process's GIL; the adapters share one client instead.
"""

from __future__ import annotations

from typing import Any

from core.settings import MongoSettings

# Long enough for one large GridFS chunk read or an insert_many of a full consumer batch on a busy
# server; a connection that is silent longer than this is dead.
MIN_SOCKET_TIMEOUT_MS = 60_000


def open_mongo_client(settings: MongoSettings) -> Any:
    """A MongoClient for ``settings.uri``: connects in the background (nothing here waits for the
    server), timestamps come back timezone-aware (UTC)."""
    from pymongo import MongoClient

    return MongoClient(
        settings.uri.get_secret_value(),
        serverSelectionTimeoutMS=settings.timeout_ms,
        connectTimeoutMS=settings.timeout_ms,
        socketTimeoutMS=max(MIN_SOCKET_TIMEOUT_MS, settings.timeout_ms),
        tz_aware=True,
    )
