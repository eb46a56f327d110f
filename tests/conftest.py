"""Shared test harness.

Servers are started only when a test asks for them (directly or through ``settings``), so
``pytest tests/unit`` needs none. Everything under ``tests/integration`` is marked ``integration``.

Session-scoped
    kafka_bootstrap -> str   ``host:port`` of a Kafka-API broker
    mongo_uri       -> str   ``mongodb://...`` of a MongoDB-wire server
    redis_url       -> str   ``redis://.../0`` of a Redis server
    servers         -> Servers(kafka_bootstrap, mongo_uri, redis_url), all three at once
    Each uses ``STREAMREC_KAFKA__BOOTSTRAP`` / ``STREAMREC_MONGO__URI`` / ``STREAMREC_REDIS__URL`` when
    set; otherwise it starts its own server (Tansu / secantusd-py / redis-server, via
    ``tooling.devstack.servers``) on a free port in a temp dir and stops it at the end of the session,
    also when tests fail or the run is interrupted.

Function-scoped
    settings     -> core.settings.Settings(_env_file=None) pointing at ``servers`` with names unique
                    to the test: topics ``events-<id>``, ``items-<id>``, ``dead-letter-<id>``,
                    ``impressions-<id>``, group id
                    ``g-<id>``, Mongo database ``t_<id>`` (dropped afterwards), Redis key prefix
                    ``t<id>:`` (keys deleted afterwards), session_timeout_ms=6000,
                    ``model.artifact_cache_dir`` and ``devstack.dir`` inside tmp_path.
    mongo_client -> pymongo.MongoClient for ``settings.mongo.uri`` (closed afterwards)
    mongo_db     -> the per-test pymongo Database ``settings.mongo.database``
    redis_client -> redis.Redis for ``settings.redis.url`` (bytes responses); use keys under
                    ``settings.redis.key_prefix``, which are deleted afterwards
    kafka_topics -> KafkaTopicHelper: ``create(name, partitions=1) -> name`` creates a topic (the dev
                    broker auto-creates unknown topics with 4 partitions; create one first when the
                    partition count matters); topics it created are deleted afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import (
    KafkaSettings,
    KafkaTopics,
    ModelSettings,
    MongoSettings,
    RedisSettings,
    Settings,
)
from tooling.settings import DevstackSettings, ToolingSettings

_ENV_VARS = {
    "kafka": "STREAMREC_KAFKA__BOOTSTRAP",
    "mongo": "STREAMREC_MONGO__URI",
    "redis": "STREAMREC_REDIS__URL",
}
_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    mongo_uri: str
    redis_url: str


def _server_url(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL from the environment, or a server of our own for the whole session."""
    from_env = os.environ.get(_ENV_VARS[name])
    if from_env:
        yield from_env
        return
    from tooling.devstack.probes import free_port
    from tooling.devstack.servers import start_server, stop_server

    base = tmp_path_factory.mktemp(f"{name}-server")
    server = start_server(name, base, free_port())
    # Belt and braces: the server runs in its own session, so make sure it dies with this process.
    cleanup = functools.partial(stop_server, server)
    atexit.register(cleanup)
    try:
        yield server.url
    finally:
        cleanup()
        atexit.unregister(cleanup)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _server_url("kafka", tmp_path_factory)


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _server_url("mongo", tmp_path_factory)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _server_url("redis", tmp_path_factory)


@pytest.fixture(scope="session")
def servers(kafka_bootstrap: str, mongo_uri: str, redis_url: str) -> Servers:
    return Servers(kafka_bootstrap=kafka_bootstrap, mongo_uri=mongo_uri, redis_url=redis_url)


@pytest.fixture(scope="session")
def _mongo_admin(mongo_uri: str) -> Iterator[Any]:
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=10_000)
    yield client
    client.close()


@pytest.fixture(scope="session")
def _redis_admin(redis_url: str) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture
def settings(servers: Servers, tmp_path: Path, _mongo_admin: Any, _redis_admin: Any) -> Iterator[Settings]:
    uid = uuid.uuid4().hex[:8]
    # The tooling's subclass: the demo and benchmark tests also need a private devstack dir.
    built = ToolingSettings(
        _env_file=None,  # type: ignore[call-arg]
        kafka=KafkaSettings(
            bootstrap=servers.kafka_bootstrap,
            topics=KafkaTopics(
                events=f"events-{uid}",
                items=f"items-{uid}",
                dead_letter=f"dead-letter-{uid}",
                impressions=f"impressions-{uid}",
            ),
            group_id=f"g-{uid}",
            session_timeout_ms=6000,
        ),
        mongo=MongoSettings(uri=SecretStr(servers.mongo_uri), database=f"t_{uid}"),
        redis=RedisSettings(url=SecretStr(servers.redis_url), key_prefix=f"t{uid}:"),
        model=ModelSettings(artifact_cache_dir=tmp_path / "artifacts"),
        devstack=DevstackSettings(dir=tmp_path / ".devstack"),
    )
    yield built
    _mongo_admin.drop_database(built.mongo.database)
    keys = list(_redis_admin.scan_iter(match=f"{built.redis.key_prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        _redis_admin.delete(*keys[start : start + 1000])


@pytest.fixture
def mongo_client(settings: Settings) -> Iterator[Any]:
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(
        settings.mongo.uri.get_secret_value(), serverSelectionTimeoutMS=settings.mongo.timeout_ms
    )
    yield client
    client.close()


@pytest.fixture
def mongo_db(mongo_client: Any, settings: Settings) -> Any:
    return mongo_client[settings.mongo.database]


@pytest.fixture
def redis_client(settings: Settings) -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(
        settings.redis.url.get_secret_value(), socket_timeout=settings.redis.timeout_s
    )
    yield client
    client.close()


class KafkaTopicHelper:
    """Creates topics with a known partition count and deletes them at the end of the test."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka.admin import AdminClient

        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.created: list[str] = []

    def create(self, name: str, partitions: int = 1) -> str:
        from confluent_kafka.admin import NewTopic

        futures = self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
        futures[name].result(timeout=30)
        self.created.append(name)
        return name

    def partitions(self, name: str) -> int:
        return len(self.admin.list_topics(name, timeout=10).topics[name].partitions)

    def delete_created(self) -> None:
        if not self.created:
            return
        for future in self.admin.delete_topics(self.created).values():
            # Best effort: a leftover uniquely named topic harms nothing.
            with contextlib.suppress(Exception):
                future.result(timeout=10)


@pytest.fixture
def kafka_topics(settings: Settings) -> Iterator[KafkaTopicHelper]:
    helper = KafkaTopicHelper(settings.kafka.bootstrap)
    yield helper
    helper.delete_created()
