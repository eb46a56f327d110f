"""The synthetic storefront: determinism, funnel, popularity shape and ground truth."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from core.events import EventType, parse_interaction
from tooling.producers.simulator import Storefront, StorefrontConfig

END = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CONFIG = StorefrontConfig(users=300, items=2000, events=30_000, seed=7, categories=12, end=END)


@pytest.fixture(scope="module")
def shop() -> Storefront:
    return Storefront(CONFIG)


@pytest.fixture(scope="module")
def events(shop: Storefront) -> list:
    return list(shop.events())


def test_same_seed_same_shop_and_events(shop: Storefront, events: list) -> None:
    again = Storefront(CONFIG)
    assert [e.to_json() for e in again.events()] == [e.to_json() for e in events]
    assert [u.to_json() for u in again.catalog()] == [u.to_json() for u in shop.catalog()]
    assert again.true_top_items("u3", 10) == shop.true_top_items("u3", 10)


def test_other_seed_other_events(events: list) -> None:
    other = Storefront(StorefrontConfig(**{**CONFIG.__dict__, "seed": 8}))
    first = [(e.user_id, e.item_id, e.event_type) for e in other.events()][:500]
    assert first != [(e.user_id, e.item_id, e.event_type) for e in events][:500]
    assert not {e.event_id for e in other.events()} & {e.event_id for e in events}


def test_exact_count_unique_ids_valid_and_time_ordered(events: list) -> None:
    assert len(events) == CONFIG.events
    assert len({e.event_id for e in events}) == len(events)
    stamps = [e.timestamp for e in events]
    assert stamps == sorted(stamps)
    assert END - timedelta(days=CONFIG.days) <= stamps[0] and stamps[-1] <= END
    # Every event survives the same parser the consumer uses.
    for event in events[:2000]:
        assert parse_interaction(event.to_json(), now=END) == event


def test_timestamps_end_now_by_default() -> None:
    shop = Storefront(StorefrontConfig(users=5, items=20, events=50, categories=2, days=0.01))
    last = list(shop.events())[-1].timestamp
    assert datetime.now(UTC) - last < timedelta(days=0.02)


def test_funnel_is_steep(events: list) -> None:
    counts = Counter(e.event_type for e in events)
    assert counts[EventType.VIEW] > 3 * counts[EventType.CLICK]
    assert counts[EventType.CLICK] > 3 * counts[EventType.ADD_TO_CART]
    assert counts[EventType.ADD_TO_CART] > 1.5 * counts[EventType.PURCHASE] > 0
    assert counts[EventType.FAVORITE] > 0


def test_purchases_follow_cart_of_available_items(shop: Storefront, events: list) -> None:
    carted: set[tuple[str, str]] = set()
    for e in events:
        if e.event_type is EventType.ADD_TO_CART:
            carted.add((e.session_id, e.item_id))
            assert shop.item_available[shop.item_ids.index(e.item_id)]
        if e.event_type is EventType.PURCHASE:
            assert (e.session_id, e.item_id) in carted


def test_item_popularity_is_zipf_like(shop: Storefront, events: list) -> None:
    views = Counter(e.item_id for e in events if e.event_type is EventType.VIEW)
    ranked = sorted(views.values(), reverse=True)
    top_tenth = sum(ranked[: CONFIG.items // 10])
    assert top_tenth > 0.4 * sum(ranked)
    # Observed frequency falls off with the generating popularity rank (log-log slope clearly negative).
    pop = shop.item_popularity
    order = np.argsort(-pop)[:200]
    freq = np.array([views.get(shop.item_ids[i], 0) for i in order], dtype=float) + 1.0
    slope = np.polyfit(np.log(np.arange(1, 201)), np.log(freq), 1)[0]
    assert slope < -0.5


def test_users_mostly_interact_with_categories_they_like(shop: Storefront, events: list) -> None:
    category = {shop.item_ids[i]: shop.category_name(int(c)) for i, c in enumerate(shop.item_category)}
    top3 = {u: set(shop.top_categories(u, 3)) for u in shop.user_ids}
    share = sum(category[e.item_id] in top3[e.user_id] for e in events) / len(events)
    assert share > 0.5  # uniform choice would give 3 / 12 = 0.25


def test_true_ranking_agrees_with_behaviour(shop: Storefront, events: list) -> None:
    per_user = Counter(e.user_id for e in events)
    heavy = [u for u, _ in per_user.most_common(20)]
    hits = 0
    for user in heavy:
        scores = shop.true_scores(user)
        assert scores.sum() == pytest.approx(1.0)
        top = set(shop.true_top_items(user, 50, available_only=False))
        mine = [e.item_id for e in events if e.user_id == user]
        hits += sum(i in top for i in mine)
    interactions = sum(per_user[u] for u in heavy)
    # 50 of 2000 items (2.5 %) take far more than their share of the interactions.
    assert hits / interactions > 0.25


def test_catalog_and_ground_truth_shapes(shop: Storefront) -> None:
    catalog = shop.catalog()
    assert len(catalog) == CONFIG.items
    assert {u.category for u in catalog} == {f"c{c}" for c in range(CONFIG.categories)}
    assert all(u.price is not None and u.price >= 0 for u in catalog)
    assert 0 < sum(not u.available for u in catalog) < CONFIG.items * 0.1
    top = shop.true_top_items("u0", 10)
    assert len(top) == 10 and all(shop.item_available[shop.item_ids.index(i)] for i in top)
    assert shop.user_factors.shape == (CONFIG.users, CONFIG.factors)
    assert shop.item_factors.shape == (CONFIG.items, CONFIG.factors)
    with pytest.raises(KeyError):
        shop.true_scores("nobody")


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="categories"):
        StorefrontConfig(items=3, categories=5)
    with pytest.raises(ValueError, match="users"):
        StorefrontConfig(users=0)


def test_interaction_rows_are_the_events_without_event_objects(shop: Storefront, events: list) -> None:
    rows = list(shop.interactions())
    assert rows == [(e.user_id, e.item_id, e.event_type.value, None, e.ts_ms) for e in events]
