"""Redis clients from ``RedisSettings``: one server, or a Redis Cluster when ``cluster`` is true.

With ``cluster`` the URL names any one node; redis-py's cluster clients discover the others, route
each command to its slot's primary and follow MOVED/ASK redirections. Everything streamrec sends
then has to stay within one slot per command, script and transaction, which the hash tags of
``core.keys`` provide; pipelines on a cluster are split by the client into one per primary.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import RedisCluster

from core.settings import RedisSettings

# A client for one Redis server or for a Redis Cluster; both speak the commands storage sends.
SyncRedis = redis.Redis | RedisCluster


def make_redis(settings: RedisSettings) -> SyncRedis:
    """Blocking client (consumer, rebuild, tooling); replies decoded to ``str``."""
    options: dict[str, Any] = {
        "socket_timeout": settings.timeout_s,
        "socket_connect_timeout": settings.timeout_s,
        "decode_responses": True,
    }
    if settings.cluster:
        return RedisCluster.from_url(settings.url.get_secret_value(), **options)
    return redis.Redis.from_url(settings.url.get_secret_value(), **options)


def make_async_redis(settings: RedisSettings) -> Any:
    """asyncio client for serving; replies stay ``bytes``. No client-side retries (serving's
    circuit breaker decides when to try again), no health-check pings."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "socket_timeout": settings.timeout_s,
        "socket_connect_timeout": settings.timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if settings.cluster:
        return AsyncRedisCluster.from_url(settings.url.get_secret_value(), **options)
    return aioredis.Redis.from_url(settings.url.get_secret_value(), **options)


def is_cluster(client: Any) -> bool:
    """True for redis-py's cluster clients (blocking or asyncio)."""
    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    return isinstance(client, RedisCluster | AsyncRedisCluster)
