"""Cold start in serving: items new to the catalog are recommendable before their first interaction.

The model artifact carries a content map (``model.content``, fitted by retrain on warm items). When a
model is loaded, ``ColdStart.wrap`` turns it into a ``model.hybrid.HybridModel`` whose side set holds a
content embedding for every catalog item the model does not know (the newest
``serving.cold_start_max_items``). It subscribes to the catalog snapshot (``serving.catalog``): an
item that appears or changes there is embedded at once, so it reaches ``/similar`` (as the query item
and as a candidate) and recommendations on the next catalog poll, about a second after its update.
Once a retrain sees the item interact, the next model knows it and its collaborative embedding takes
over: the side set is rebuilt per model from the items that model does not know.

Answers that come from content say so: a cold item's ``reason`` is ``{"kind": "content", "new": true}``,
and every item similar to a cold item is ``{"kind": "content", "item_id": <cold item>, "new": ...}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from model.hybrid import ColdSet, HybridModel, SideItems
from model.trained_model import TrainedModel
from serving.model_holder import Loader
from serving.model_port import LoadedModel
from serving.ranking import Ranked

log = logging.getLogger(__name__)

# Changes up to this many items are embedded on the event loop (a sparse product, well under a
# millisecond per item); larger ones (the first load, a bulk catalog import) in a worker thread.
INLINE_MAX = 500
EMBED_CHUNK = 20_000
_EPOCH = datetime.min.replace(tzinfo=UTC)


class ItemRecord(Protocol):
    """What ``serving.catalog.ItemMeta`` offers (duck-typed: the catalog module is the data's owner)."""

    item_id: str
    title: str | None
    category: str | None
    brand: str | None
    price: float | None
    available: bool | None
    added_at: datetime | None
    updated_at: datetime | None

    @property
    def properties(self) -> Any: ...


class Catalog(Protocol):
    def __iter__(self) -> Any: ...

    def subscribe(self, callback: Callable[[Any], Any]) -> Callable[[], None]: ...


def as_doc(meta: ItemRecord) -> dict[str, Any]:
    """The catalog document the content featurizer reads."""
    return {
        "title": meta.title,
        "category": meta.category,
        "brand": meta.brand,
        "price": meta.price,
        "properties": dict(meta.properties or {}),
    }


def _arrived(meta: ItemRecord) -> datetime:
    return meta.added_at or meta.updated_at or _EPOCH


class ColdStart:
    def __init__(self, catalog: Catalog, max_items: int, gauge: Any | None = None) -> None:
        self.catalog = catalog
        self.max_items = max_items
        # streamrec_serving_cold_items: the side set of the newest model generation.
        self.gauge = gauge
        # The generations updates go to: the one being loaded and the one serving (at most two).
        self._generations: list[tuple[TrainedModel, ColdSet]] = []
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.unsubscribe = catalog.subscribe(self.on_change)

    def wrap(self, loader: Loader) -> Loader:
        """``loader`` whose models also answer for cold items (when the artifact has a content model)."""

        def load(files: dict[str, bytes], record: Any) -> LoadedModel:
            return self.attach(loader(files, record))

        return load

    def attach(self, loaded: LoadedModel) -> LoadedModel:
        base = loaded.model
        if self.max_items <= 0 or not isinstance(base, TrainedModel) or base.content is None:
            return loaded
        cold = ColdSet(SideItems.empty(base.dim))
        with self._lock:
            # Registered before the catalog is read: a change arriving meanwhile lands here too.
            self._generations = [*self._generations[-1:], (base, cold)]
        pending = [
            m for m in list(self.catalog) if not base.knows_item(m.item_id) and m.available is not False
        ]
        pending.sort(key=_arrived)
        self._embed(base, cold, pending[-self.max_items :], keep_newer=True)
        log.info("event=cold_start_attached version=%s cold_items=%d", loaded.version, len(cold.side))
        return dataclasses.replace(loaded, model=HybridModel(base, cold))

    def on_change(self, change: Any) -> None:
        """Catalog subscriber (event loop): embed the changed items no model generation knows."""
        items: Sequence[ItemRecord] = change.items
        if not self._generations or not items:
            return
        if len(items) <= INLINE_MAX:
            self.apply(items)
            return
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.apply, items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def apply(self, items: Sequence[ItemRecord]) -> None:
        items = sorted(items, key=_arrived)  # oldest first: the cap keeps the newest arrivals
        for base, cold in list(self._generations):
            self._embed(base, cold, [m for m in items if not base.knows_item(m.item_id)])

    def _embed(
        self, base: TrainedModel, cold: ColdSet, metas: Sequence[ItemRecord], keep_newer: bool = False
    ) -> None:
        """Embed ``metas`` (oldest first) into ``cold``; unavailable ones leave it. ``keep_newer``: what
        the set already holds arrived while ``metas`` were read, so it stays the newest end."""
        gone = {m.item_id for m in metas if m.available is False}
        # Oldest first: only the newest max_items could stay (a first catalog load may hold millions).
        live = [m for m in metas if m.available is not False][-self.max_items :]
        ids = [m.item_id for m in live]
        fresh = SideItems.empty(base.dim)
        for start in range(0, len(live), EMBED_CHUNK):
            chunk = live[start : start + EMBED_CHUNK]
            vecs = base.content_vectors([as_doc(m) for m in chunk])
            if vecs is None:
                return
            fresh = fresh.upsert(ids[start : start + EMBED_CHUNK], *vecs, max_items=self.max_items)
        with self._lock:
            side = cold.side
            if keep_newer:
                rows = list(range(len(side)))
                side = fresh.upsert(
                    list(side.ids), side.item_vecs[rows], side.input_vecs[rows], self.max_items
                )
            else:
                side = side.upsert(list(fresh.ids), fresh.item_vecs, fresh.input_vecs, self.max_items)
            cold.side = side.without(gone)
            if self.gauge is not None and self._generations and self._generations[-1][1] is cold:
                self.gauge.set(len(cold.side))
        if live:
            log.debug("event=cold_items_embedded items=%d held=%d", len(live), len(cold.side))


def cold_tag(model: Any) -> bytes:
    """Part of the recommendations cache tag: which cold items the answer could include."""
    return ("+" + model.side.tag).encode() if isinstance(model, HybridModel) else b""


def label_cold(model: Any, ranked: list[Ranked]) -> list[Ranked]:
    """Cold items in a list say they were placed by their content."""
    if not isinstance(model, HybridModel) or not len(model.side):
        return ranked
    return [
        dataclasses.replace(r, kind="content", because=None, detail={"new": True})
        if model.is_cold(r.item_id)
        else r
        for r in ranked
    ]


def label_similar(model: Any, anchor: str, ranked: Iterable[Ranked]) -> list[Ranked]:
    """Items similar to a cold item were found by its content; a cold candidate says it is new."""
    if not isinstance(model, HybridModel):
        return list(ranked)
    if model.is_cold(anchor):
        return [
            dataclasses.replace(
                r, kind="content", because=None, detail={"item_id": anchor, "new": model.is_cold(r.item_id)}
            )
            for r in ranked
        ]
    return [
        dataclasses.replace(r, kind="content", because=None, detail={"item_id": anchor, "new": True})
        if model.is_cold(r.item_id)
        else r
        for r in ranked
    ]
