"""serving.cold_start: cold items follow the catalog and say they were placed by content."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from model.hybrid import HybridModel
from model.trained_model import TrainedModel
from serving.cold_start import ColdStart, cold_tag, label_cold, label_similar
from serving.model_port import LoadedModel
from serving.ranking import Ranked
from tests.unit.cold_start_fixtures import BRANDS, clustered_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Meta:
    item_id: str
    title: str | None = None
    category: str | None = None
    brand: str | None = None
    price: float | None = None
    available: bool | None = None
    properties: Any = field(default_factory=dict)
    added_at: datetime | None = None
    updated_at: datetime | None = None


def meta(item: str, cluster: int, minute: int = 0, available: bool | None = None) -> Meta:
    return Meta(
        item,
        title=f"{BRANDS[cluster]} gadget",
        category=f"Shop > c{cluster}",
        brand=BRANDS[cluster],
        available=available,
        added_at=T0 + timedelta(minutes=minute),
    )


@dataclass
class Change:
    items: tuple[Meta, ...]
    added: frozenset[str] = frozenset()


@dataclass
class FakeCatalog:
    items: dict[str, Meta] = field(default_factory=dict)
    subscribers: list[Callable[[Any], Any]] = field(default_factory=list)

    def __iter__(self) -> Any:
        return iter(list(self.items.values()))

    def subscribe(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def update(self, *metas: Meta) -> None:
        for m in metas:
            self.items[m.item_id] = m
        for callback in self.subscribers:
            callback(Change(metas))


@pytest.fixture(scope="module")
def base() -> TrainedModel:
    return clustered_model()


def _attach(base: TrainedModel, catalog: FakeCatalog, max_items: int = 100) -> tuple[ColdStart, HybridModel]:
    cold = ColdStart(catalog, max_items)
    loaded = cold.wrap(lambda files, record: LoadedModel(model=base, version="1"))({}, None)
    assert isinstance(loaded.model, HybridModel) and loaded.version == "1"
    return cold, loaded.model


def test_catalog_items_the_model_does_not_know_are_embedded_at_load(base: TrainedModel) -> None:
    catalog = FakeCatalog(
        {"i1": meta("i1", 1), "old": meta("old", 2), "off": meta("off", 1, available=False)}
    )
    _, model = _attach(base, catalog)
    assert model.side.ids == ("old",)  # i1 is warm; an unavailable item is not offered
    assert model.is_cold("old") and not model.is_cold("i1")


def test_a_new_item_is_served_from_its_catalog_update(base: TrainedModel) -> None:
    catalog = FakeCatalog()
    _, model = _attach(base, catalog)
    tag = cold_tag(model)
    assert not model.knows_item("n1")
    catalog.update(meta("n1", 1, minute=5))
    assert model.knows_item("n1") and cold_tag(model) != tag
    assert "n1" in [i for i, _ in model.similar("i1", 25)]
    assert sum(i.startswith("i") and int(i[1:]) % 3 == 1 for i, _ in model.similar("n1", 10)) >= 8
    # Made unavailable: it leaves the side set.
    catalog.update(dataclasses.replace(meta("n1", 1), available=False))
    assert not model.knows_item("n1")


def test_side_set_keeps_the_newest(base: TrainedModel) -> None:
    catalog = FakeCatalog({f"o{m}": meta(f"o{m}", m % 3, minute=m) for m in range(5)})
    _, model = _attach(base, catalog, max_items=3)
    assert model.side.ids == ("o2", "o3", "o4")
    catalog.update(meta("n9", 0, minute=99))
    assert model.side.ids == ("o4", "n9")  # over the cap: the oldest go, down to 3 - max(1, 3 // 10)


def test_large_changes_are_embedded_off_the_event_loop(base: TrainedModel) -> None:
    catalog = FakeCatalog()
    _, model = _attach(base, catalog, max_items=2000)

    async def bulk() -> None:
        catalog.update(*(meta(f"b{n}", n % 3, minute=n) for n in range(600)))
        await asyncio.sleep(0)
        for _ in range(200):
            if len(model.side) == 600:
                return
            await asyncio.sleep(0.01)

    asyncio.run(bulk())
    assert len(model.side) == 600


def test_models_without_a_content_map_are_served_as_they_are(base: TrainedModel) -> None:
    bare = TrainedModel(dataclasses.replace(base.artifact, content_weights=None, content_vocab=None))
    loaded = LoadedModel(model=bare, version="2")
    assert ColdStart(FakeCatalog(), 100).attach(loaded) is loaded
    assert ColdStart(FakeCatalog(), 0).attach(LoadedModel(model=base, version="3")).model is base
    assert cold_tag(bare) == b""


def test_reasons_say_content(base: TrainedModel) -> None:
    catalog = FakeCatalog({"n1": meta("n1", 1)})
    _, model = _attach(base, catalog)
    ranked = [Ranked("i1", 2.0, "personalized"), Ranked("n1", 1.0, "personalized")]
    out = [r.to_json()["reason"] for r in label_cold(model, ranked)]
    assert out == [{"kind": "personalized"}, {"kind": "content", "new": True}]
    similar_to_cold = label_similar(model, "n1", [Ranked("i4", 1.0, "similar_to", "n1")])
    assert similar_to_cold[0].to_json()["reason"] == {"kind": "content", "item_id": "n1", "new": False}
    similar_to_warm = label_similar(
        model, "i1", [Ranked("i4", 2.0, "similar_to", "i1"), Ranked("n1", 1.0, "similar_to", "i1")]
    )
    assert [r.kind for r in similar_to_warm] == ["similar_to", "content"]
    assert label_cold(base, ranked) == ranked


def test_the_next_model_takes_over_items_it_was_trained_on(base: TrainedModel) -> None:
    catalog = FakeCatalog({"i61": meta("i61", 1), "n1": meta("n1", 1)})
    cold = ColdStart(catalog, 100)
    first = cold.attach(LoadedModel(model=base, version="1")).model
    assert isinstance(first, HybridModel) and first.is_cold("i61")
    # The next retrain saw i61 interact: its collaborative embedding serves it, n1 stays cold.
    retrained = clustered_model(version=2, n_items=63)
    second = cold.attach(LoadedModel(model=retrained, version="2")).model
    assert isinstance(second, HybridModel)
    assert not second.is_cold("i61") and second.knows_item("i61") and second.side.ids == ("n1",)
    # Catalog changes reach both generations while the new one is being swapped in.
    catalog.update(meta("n2", 2))
    assert first.is_cold("n2") and second.is_cold("n2")


def test_the_gauge_counts_the_newest_generations_cold_items(base: TrainedModel) -> None:
    from prometheus_client import CollectorRegistry

    from serving.metrics import ServingMetrics

    metrics = ServingMetrics(CollectorRegistry())
    catalog = FakeCatalog({"n1": meta("n1", 1)})
    ColdStart(catalog, 100, metrics.cold_items).attach(LoadedModel(model=base, version="1"))
    catalog.update(meta("n2", 2))
    assert metrics.registry.get_sample_value("streamrec_serving_cold_items") == 2
