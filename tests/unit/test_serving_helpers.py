"""Shared helpers for the serving unit tests: a tiny model with clear category structure and an app
wired to in-memory twins."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from fastapi.testclient import TestClient
from pydantic import SecretStr

from core.errors import ArtifactError
from core.impressions import Impression
from core.settings import ServingSettings, Settings
from serving.adapters import RecentUsers, ServingAdapters, resilient
from serving.app import create_app
from serving.model_holder import Loader
from serving.model_port import LoadedModel
from serving.ports import InMemoryProducer
from storage.event_store_memory import InMemoryEventStore
from storage.experiments import InMemoryExperimentStore
from storage.impression_log import InMemoryImpressionLog
from storage.impressions import InMemoryImpressionStore
from storage.model_registry_memory import InMemoryModelRegistry
from storage.realtime_reader_twin import InMemoryRealtimeReader
from storage.retrain_requests import InMemoryRetrainRequests
from storage.shoppers import InMemoryShopperStore

CATEGORIES = ("books", "games", "music", "tools")
PER_CATEGORY = 10
READ, INGEST, ADMIN = "read-key", "ingest-key", "admin-key"


class TinyModel:
    """A brute-force ServingModel over numpy arrays (the real one lives in model/)."""

    def __init__(self, item_ids: list[str], items: np.ndarray, users: dict[str, np.ndarray], pop: np.ndarray):
        self.item_ids = item_ids
        self.items = items.astype(np.float32)
        self.users = users
        self.pop = pop
        self.index = {iid: i for i, iid in enumerate(item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def knows_item(self, item_id: str) -> bool:
        return item_id in self.index

    def user_vector(self, user_id: str) -> np.ndarray | None:
        return self.users.get(user_id)

    def fold_in(self, pairs: Sequence[tuple[str, float]]) -> np.ndarray | None:
        rows = [(self.index[i], w) for i, w in pairs if i in self.index]
        if not rows:
            return None
        return np.sum([self.items[r] * w for r, w in rows], axis=0)

    def item_vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        return self.items[[self.index[i] for i in item_ids]]

    def recommend(self, query: np.ndarray, k: int, exclude: Collection[str] = ()) -> list[tuple[str, float]]:
        scores = self.items @ query
        order = np.argsort(-scores, kind="stable")
        out = [(self.item_ids[i], float(scores[i])) for i in order if self.item_ids[i] not in exclude]
        return out[:k]

    def similar(self, item_id: str, k: int) -> list[tuple[str, float]]:
        return [p for p in self.recommend(self.items[self.index[item_id]], k + 1) if p[0] != item_id][:k]

    def popular_items(self, k: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.pop, kind="stable")[:k]
        return [(self.item_ids[i], float(self.pop[i])) for i in order]


def category_of(item_id: str) -> str:
    return item_id.split("-")[0]


def model_files(seed: int = 0, users: dict[str, str] | None = None) -> dict[str, bytes]:
    """Files of a model whose items cluster by category; ``users`` maps user -> favourite category."""
    rng = np.random.default_rng(seed)
    dim = len(CATEGORIES) + 2
    item_ids, rows = [], []
    for c, cat in enumerate(CATEGORIES):
        for j in range(PER_CATEGORY):
            vec = rng.normal(0, 0.05, dim)
            vec[c] += 1.0
            item_ids.append(f"{cat}-{j}")
            rows.append(vec)
    user_vecs = {}
    for uid, cat in (users or {"alice": "books", "bob": "tools"}).items():
        vec = np.zeros(dim)
        vec[CATEGORIES.index(cat)] = 1.0
        user_vecs[uid] = vec.tolist()
    pop = np.arange(len(item_ids), 0, -1, dtype=np.float64)  # books-0 most popular, tools-9 least
    doc = {"items": item_ids, "emb": np.asarray(rows).tolist(), "users": user_vecs, "pop": pop.tolist()}
    return {"model.json": orjson.dumps(doc)}


def tiny_loader(files: dict[str, bytes], record: Any) -> LoadedModel:
    try:
        doc = orjson.loads(files["model.json"])
        model = TinyModel(
            list(doc["items"]),
            np.asarray(doc["emb"], dtype=np.float32),
            {u: np.asarray(v, dtype=np.float32) for u, v in doc["users"].items()},
            np.asarray(doc["pop"]),
        )
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise ArtifactError(f"artifact is corrupt: {exc}") from exc
    if model.n_items == 0 or not np.isfinite(model.items).all():
        raise ArtifactError("artifact has no items or non-finite embeddings")
    return LoadedModel(model, str(record.version), dict(record.metrics), record.trained_at, index="exact")


def make_settings(**serving: Any) -> Settings:
    base: dict[str, Any] = {
        "api_keys_read": [SecretStr(READ)],
        "api_keys_ingest": [SecretStr(INGEST)],
        "api_keys_admin": [SecretStr(ADMIN)],
        "public_read": False,
        "model_poll_s": 0.05,
    }
    base.update(serving)
    return Settings(_env_file=None, serving=ServingSettings(**base))  # type: ignore[call-arg]


@dataclass
class Harness:
    client: TestClient
    registry: InMemoryModelRegistry
    realtime: InMemoryRealtimeReader
    events: InMemoryEventStore
    producer: InMemoryProducer
    retrain: InMemoryRetrainRequests
    settings: Settings
    recent_users: RecentUsers | None = None
    impression_log: InMemoryImpressionLog | None = field(default_factory=InMemoryImpressionLog)
    experiments: InMemoryExperimentStore = field(default_factory=InMemoryExperimentStore)
    loader: Loader = tiny_loader
    # Stored impressions (what the consumer wrote): erasure and the online report read them.
    impression_store: InMemoryImpressionStore = field(default_factory=InMemoryImpressionStore)
    # Shopper attributes (PUT /v1/users/{user_id}).
    shoppers: InMemoryShopperStore = field(default_factory=InMemoryShopperStore)

    def adapters(self) -> ServingAdapters:
        """The twins as the app's adapters (a fresh set each call: each app closes its own)."""
        return ServingAdapters(
            registry=self.registry,
            realtime=self.realtime,
            events=self.events,
            retrain_requests=self.retrain,
            producer=resilient(self.producer),
            loader=self.loader,
            recent_users=self.recent_users,
            experiments=self.experiments,
            impression_log=self.impression_log,
            impressions=self.impression_store,
            shoppers=self.shoppers,
        )

    @property
    def impressions(self) -> list[Impression]:
        assert self.impression_log is not None
        return self.impression_log.records

    def get(self, path: str, key: str | None = READ, **params: Any) -> Any:
        headers = {"X-API-Key": key} if key else {}
        return self.client.get(path, params=params, headers=headers)

    def recs(self, user: str, **params: Any) -> dict[str, Any]:
        resp = self.get(f"/v1/users/{user}/recommendations", **params)
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]

    def publish(self, files: dict[str, bytes] | None = None, **record: Any) -> int:
        version = self.registry.publish(files or model_files(), record)
        self.registry.promote(version, "test")
        return version

    def wait_for_version(self, version: int | None, timeout_s: float = 10.0) -> None:
        holder = self.client.app.state.holder  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = holder.current
            if (current.version if current else None) == (str(version) if version is not None else None):
                return
            time.sleep(0.02)
        raise AssertionError(f"model version {version} not loaded; holder has {holder.current}")

    def wait_for_refusal(self, version: int, timeout_s: float = 10.0) -> None:
        holder = self.client.app.state.holder  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout_s
        while str(version) not in holder.refused:
            assert time.monotonic() < deadline, "bad version was not refused"
            time.sleep(0.02)


def catalog(realtime: InMemoryRealtimeReader) -> None:
    for cat in CATEGORIES:
        for j in range(PER_CATEGORY):
            realtime.set_item(f"{cat}-{j}", category=cat)


@contextmanager
def harness(
    with_model: bool = True,
    recent_users: RecentUsers | None = None,
    loader: Loader = tiny_loader,
    impression_log: InMemoryImpressionLog | None = None,
    impressions: bool = True,
    **serving: Any,
) -> Iterator[Harness]:
    settings = make_settings(**serving)
    h = Harness(
        loader=loader,
        impression_log=(impression_log or InMemoryImpressionLog()) if impressions else None,
        client=None,  # type: ignore[arg-type]
        registry=InMemoryModelRegistry(),
        realtime=InMemoryRealtimeReader(),
        events=InMemoryEventStore(),
        producer=InMemoryProducer(),
        retrain=InMemoryRetrainRequests(),
        settings=settings,
        recent_users=recent_users,
    )
    catalog(h.realtime)
    version = h.publish() if with_model else None
    app = create_app(settings, h.adapters(), snapshot_ttl_s=0.05)
    with TestClient(app, raise_server_exceptions=False) as client:
        h.client = client
        if version is not None:
            h.wait_for_version(version)
        yield h


def test_tiny_model_ranks_own_category_first() -> None:
    loaded = tiny_loader(model_files(), type("R", (), {"version": 1, "metrics": {}, "trained_at": None})())
    top = loaded.model.recommend(loaded.model.user_vector("alice"), 5)  # type: ignore[arg-type]
    assert {category_of(i) for i, _ in top} == {"books"}


def test_cached_results_are_only_served_for_the_model_and_catalog_that_computed_them() -> None:
    from serving.service import cache_payload, cache_tag, cached_items_for

    items = b'[{"item_id":"i1","score":0.5,"reason":{"kind":"personalized"}}]'
    tag = cache_tag("7", b"c1")
    payload = cache_payload(tag, items)
    assert cached_items_for(payload, tag) == items
    assert cached_items_for(payload, cache_tag("8", b"c1")) is None
    assert cached_items_for(payload, cache_tag("7", b"c2")) is None  # the catalog changed
    assert cached_items_for(payload, cache_tag(None, b"c1")) is None
    assert cached_items_for(cache_payload(cache_tag(None, b"-"), b"[]"), cache_tag(None, b"-")) == b"[]"
    # A version with ':' cannot cut the tag short.
    assert cached_items_for(cache_payload(cache_tag("a:b", b"c"), b"[]"), cache_tag("a:b", b"c")) == b"[]"
    # Entries written in an older layout (a JSON object) or truncated ones are misses, not errors.
    assert cached_items_for(b'{"v": "7", "items": []}', tag) is None
    assert cached_items_for(tag + b":", tag) is None
