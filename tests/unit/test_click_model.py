"""The simulator's click model: position bias, affinity-driven clicks, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from core.events import EventType
from tooling.producers.simulator import ClickModel, ClickModelConfig, Storefront, StorefrontConfig

SHOP_CONFIG = StorefrontConfig(users=200, items=1500, events=0, seed=11, categories=12)
USERS = [f"u{n}" for n in range(200)]


@pytest.fixture(scope="module")
def shop() -> Storefront:
    return Storefront(SHOP_CONFIG)


def _lists(shop: Storefront, user_id: str) -> tuple[list[str], list[str]]:
    """The shopper's true top 10 (best first) and 10 items they like least among the available ones."""
    scores = shop.true_scores(user_id)
    order = np.argsort(-scores, kind="stable")
    return [shop.item_ids[i] for i in order[:10]], [shop.item_ids[i] for i in order[-10:]]


def _total(model: ClickModel, lists: dict[str, list[str]], draws: int, kind: EventType) -> int:
    return sum(
        sum(r.event_type == kind for r in model.react(user, items, draw))
        for user, items in lists.items()
        for draw in range(draws)
    )


def test_better_ranked_lists_get_more_clicks_carts_and_purchases(shop: Storefront) -> None:
    model = ClickModel(shop, seed=3)
    good, bad = {}, {}
    for user in USERS:
        good[user], bad[user] = _lists(shop, user)
    for kind in (EventType.CLICK, EventType.ADD_TO_CART):
        assert _total(model, good, 5, kind) > 3 * max(1, _total(model, bad, 5, kind))
    assert _total(model, good, 5, EventType.PURCHASE) > _total(model, bad, 5, EventType.PURCHASE)


def test_the_same_list_gets_more_clicks_in_true_order_than_reversed(shop: Storefront) -> None:
    """Position bias: the same ten items earn more clicks when the liked ones are on top."""
    model = ClickModel(shop, seed=4)
    ordered = {user: _lists(shop, user)[0] for user in USERS}
    reversed_ = {user: items[::-1] for user, items in ordered.items()}
    expected_ordered = sum(model.click_probabilities(u, i).sum() for u, i in ordered.items())
    expected_reversed = sum(model.click_probabilities(u, i).sum() for u, i in reversed_.items())
    assert expected_ordered > 1.1 * expected_reversed
    assert _total(model, ordered, 10, EventType.CLICK) > _total(model, reversed_, 10, EventType.CLICK)


def test_examination_falls_monotonically_with_position(shop: Storefront) -> None:
    for eta in (0.5, 1.0, 2.0):
        examine = ClickModel(shop, ClickModelConfig(eta=eta)).examine(np.arange(20))
        assert examine[0] == 1.0
        assert np.all(np.diff(examine) < 0)
    # Steeper bias: lower positions are examined less.
    assert ClickModel(shop, ClickModelConfig(eta=2.0)).examine(5) < ClickModel(shop).examine(5)
    assert np.all(ClickModel(shop, ClickModelConfig(eta=0.0)).examine(np.arange(10)) == 1.0)


def test_observed_click_rate_per_position_falls_for_an_exchangeable_list(shop: Storefront) -> None:
    """Shuffled lists put no item systematically on top: clicks per position follow examine(p)."""
    model = ClickModel(shop, seed=5)
    rng = np.random.default_rng(0)
    per_position = np.zeros(10)
    for user in USERS:
        top = _lists(shop, user)[0]
        for draw in range(20):
            shown = [top[i] for i in rng.permutation(10)]
            for reaction in model.react(user, shown, draw):
                if reaction.event_type == EventType.CLICK:
                    per_position[reaction.position] += 1
    assert per_position[0] > per_position[1] > per_position[3] > per_position[9]


def test_attractiveness_rises_with_true_affinity(shop: Storefront) -> None:
    model = ClickModel(shop)
    top, worst = _lists(shop, "u7")
    affinity = model.affinity("u7", top + worst)
    attractiveness = model.attractiveness("u7", top + worst)
    order = np.argsort(affinity)
    assert np.all(np.diff(attractiveness[order]) >= 0)
    assert attractiveness[:10].min() > attractiveness[10:].max()
    assert np.all((attractiveness > 0) & (attractiveness < 1))


def test_unknown_items_are_never_clicked(shop: Storefront) -> None:
    model = ClickModel(shop, seed=1)
    assert list(model.attractiveness("u1", ["not-an-item", "i0"]) > 0) == [False, True]
    assert all(r.item_id == "i0" for d in range(50) for r in model.react("u1", ["not-an-item", "i0"], d))


def test_same_seed_same_reactions_other_seed_other_reactions(shop: Storefront) -> None:
    lists = {user: _lists(shop, user)[0] for user in USERS[:50]}

    def all_reactions(seed: int) -> list[list[tuple[int, str, str]]]:
        model = ClickModel(shop, seed=seed)
        return [
            [(r.position, r.item_id, r.event_type.value) for r in model.react(u, items, draw)]
            for u, items in lists.items()
            for draw in range(3)
        ]

    first = all_reactions(9)
    assert first == all_reactions(9)
    assert first != all_reactions(10)
    # Order-independent: judging the lists in reverse order gives each the same reactions.
    model = ClickModel(shop, seed=9)
    backwards = [
        [(r.position, r.item_id, r.event_type.value) for r in model.react(u, items, draw)]
        for u, items in reversed(list(lists.items()))
        for draw in reversed(range(3))
    ]
    assert backwards[::-1] == first


def test_purchases_follow_carts_follow_clicks(shop: Storefront) -> None:
    model = ClickModel(shop, ClickModelConfig(cart_scale=1.0, purchase_scale=1.0), seed=2)
    for user in USERS[:100]:
        items = _lists(shop, user)[0]
        clicked: set[int] = set()
        carted: set[int] = set()
        for r in model.react(user, items):
            if r.event_type == EventType.CLICK:
                clicked.add(r.position)
            elif r.event_type == EventType.ADD_TO_CART:
                assert r.position in clicked
                assert shop.item_available[shop.item_ids.index(r.item_id)]
                carted.add(r.position)
            else:
                assert r.event_type == EventType.PURCHASE and r.position in carted


@pytest.mark.parametrize(
    "bad", [{"eta": -0.1}, {"slope": -1.0}, {"cart_scale": 1.5}, {"purchase_scale": -0.1}]
)
def test_config_refuses_meaningless_values(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ClickModelConfig(**bad)


def test_unknown_shopper_is_a_clear_error(shop: Storefront) -> None:
    with pytest.raises(KeyError, match="unknown simulated user"):
        ClickModel(shop).react("u999999", ["i1"])
