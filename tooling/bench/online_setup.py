"""`bench online`'s set-up: a simulated shop's history stored by the real consumer, and two models
trained on it with the product's retraining run: a well-trained one and a deliberately degraded one.

The degraded model is trained on the very same stored events with the item ids permuted among
themselves: the data stays well-formed (same users, same item set, same popularity shape, same
sessions), but every item's learned embedding belongs to another item, so it recommends the wrong
things with full confidence. Retraining's gate would prefer it on its own (permuted) hold-out, so it
is trained first and the good model second: the gate then judges the good one against it on the
real events, and the good one ends up champion (promoted by hand if the gate could not judge).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from core.errors import StreamrecError
from core.settings import Settings
from tooling.bench.common import BenchRun, produce_records
from tooling.producers.produce import event_record, item_record
from tooling.producers.simulator import Storefront, StorefrontConfig

log = logging.getLogger(__name__)

# The storefront's history ends now and spans this many days (retrain's default window is unbounded).
HISTORY_DAYS = 7.0


def online_storefront(shoppers: int, items: int, history_events: int, seed: int) -> Storefront:
    """One simulated user per shopper: every shopper the bench sends has a known taste."""
    categories = max(1, min(20, items // 50))
    return Storefront(
        StorefrontConfig(
            users=shoppers,
            items=items,
            events=history_events,
            seed=seed,
            categories=categories,
            days=HISTORY_DAYS,
        )
    )


def store_history(run: BenchRun, shop: Storefront) -> int:
    """Catalog and history through Kafka, stored by a `streamrec consume` subprocess; returns the count.

    The consumer is started first, so its (slow, on the dev broker) group join overlaps the produce.
    """
    run.start_consumer(stored_base=0)
    topics = run.settings.kafka.topics
    produce_records(run, topics.items, [item_record(u) for u in shop.catalog()])
    history = [event_record(e) for e in shop.events()]
    produce_records(run, topics.events, history)  # raises unless Kafka acknowledged every record
    run.wait_stored(len(history))
    return len(history)


# ---------------------------------------------------------------- the two models


def item_permutation(item_ids: list[str], seed: int) -> dict[str, str]:
    """A derangement-like shuffle of the catalog: id -> the id whose place it takes in the degraded data.

    A random permutation that leaves an item in place would leave that item right; rotating a shuffled
    order by one moves every item (for two or more items).
    """
    order = list(np.random.default_rng(seed).permutation(len(item_ids)))
    shuffled = [item_ids[i] for i in order]
    rotated = shuffled[1:] + shuffled[:1]
    return dict(zip(shuffled, rotated, strict=True))


class PermutedItems:
    """An ``retrain.event_source.EventSource`` over the stored events with item ids permuted."""

    def __init__(self, source: Any, mapping: dict[str, str]) -> None:
        self.source = source
        self.mapping = mapping

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        exclude_users: Iterable[str] = (),
        batch_size: int = 5000,
        fields: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        for batch in self.source.iter_events(since, until, exclude_users, batch_size, fields):
            yield [{**doc, "item_id": self.mapping.get(doc["item_id"], doc["item_id"])} for doc in batch]

    def erased_users(self) -> set[str]:
        return set(self.source.erased_users())

    def count_events(self) -> int:
        return int(self.source.count_events())


@dataclass(frozen=True)
class TrainedPair:
    good_version: int
    degraded_version: int
    # What retraining's gate said about each (outcome, reason, held-out NDCG@10 on its own data).
    runs: dict[str, dict[str, Any]]


def train_pair(settings: Settings, shop: Storefront, permutation_seed: int) -> TrainedPair:
    """Train and publish the degraded model, then the good one; the good one is champion afterwards."""
    from retrain.model_adapter import trainer_from_settings
    from retrain.pipeline import RetrainConfig, run_retrain
    from storage.event_store import MongoEventStore
    from storage.model_registry_mongo import open_model_registry

    config = RetrainConfig.from_settings(settings.retrain)
    trainer = trainer_from_settings(settings.model)
    store = MongoEventStore.from_settings(settings.mongo)
    registry = open_model_registry(settings)
    now = datetime.now(UTC)
    runs: dict[str, dict[str, Any]] = {}
    try:
        permuted = PermutedItems(store, item_permutation(shop.item_ids, permutation_seed))
        versions: dict[str, int] = {}
        for name, source in (("degraded", permuted), ("good", store)):
            result = run_retrain(source, registry, trainer, config, now=now)
            if result.version is None:
                raise StreamrecError(f"training the {name} model published nothing ({result.outcome})")
            versions[name] = result.version
            runs[name] = {
                "version": result.version,
                "outcome": result.outcome,
                "reason": result.decision.reason if result.decision else None,
                "holdout_ndcg@10": result.metrics.get("holdout_ndcg@10"),
                # The previous champion on this run's hold-out: for the good model, the degraded one
                # scored on the real events.
                "champion_ndcg@10": result.decision.champion_ndcg if result.decision else None,
                "events": result.n_events,
                "duration_s": round(result.duration_s, 3),
            }
        champion = registry.champion()
        if champion is None or champion.version != versions["good"]:
            registry.promote(versions["good"], "bench online: the well-trained model is the control")
            runs["good"]["promoted_by_bench"] = True
    finally:
        registry.close()
        store.close()
    log.info("event=bench_online_models good=%d degraded=%d", versions["good"], versions["degraded"])
    return TrainedPair(versions["good"], versions["degraded"], runs)
