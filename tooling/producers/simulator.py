"""A synthetic storefront with known ground truth, for demos, benchmarks and recommender tests.

Pure: no IO, deterministic by seed. Users have a category affinity (Dirichlet, concentrated) and a
latent taste vector; items have a category, a latent vector near their category's centre and a
Zipf popularity. A shopper's sessions focus on one category; each view picks an item with
probability ∝ popularity^β · exp(taste·item / τ), and the funnel (view → click → add to cart →
purchase, click → favorite) is steeper for items that match the taste less well.

The ground truth a perfect recommender would recover is ``true_scores(user)``: the probability
that the user's next view lands on each item.

``ClickModel`` closes the loop for online tests: a shopper shown a ranked list clicks each item with
P = examine(position) x attractiveness(true affinity), the position-based click model; a click may be
followed by an add-to-cart and a purchase, likelier for items the shopper truly likes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from core.events import EventType, InteractionEvent, ItemUpdate, Scalar
from core.ids import deterministic_event_id

# Base conditional probabilities of the funnel for an item of average match (match factor 1).
P_CLICK = 0.2
P_FAVORITE = 0.08
P_CART = 0.2
P_PURCHASE = 0.35
# Share of a session's views that stay in its focus category.
SESSION_FOCUS = 0.75
UNAVAILABLE_SHARE = 0.03


@dataclass(frozen=True)
class StorefrontConfig:
    users: int = 1000
    items: int = 5000
    events: int = 100_000
    seed: int = 42
    categories: int = 20
    days: float = 7.0
    # End of the simulated period; None means "now" when the Storefront is built.
    end: datetime | None = None
    factors: int = 8
    zipf_exponent: float = 1.05
    # Weight of popularity against taste in the choice of a viewed item.
    popularity_weight: float = 0.8
    taste_temperature: float = 0.5
    # Lower means users concentrate on fewer categories.
    category_concentration: float = 0.3
    mean_session_events: float = 8.0

    def __post_init__(self) -> None:
        for name in ("users", "items", "categories", "factors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.events < 0:
            raise ValueError("events must not be negative")
        if self.days <= 0:
            raise ValueError("days must be positive")
        if self.categories > self.items:
            raise ValueError("categories must not exceed items")


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return np.asarray(z / z.sum())


@dataclass
class _Session:
    index: int
    user: int
    start_ms: int
    budget: int


@dataclass
class Storefront:
    """Build once per config; ``events()`` can be iterated any number of times with identical output."""

    config: StorefrontConfig
    end: datetime = field(init=False)
    user_ids: list[str] = field(init=False)
    item_ids: list[str] = field(init=False)
    item_category: np.ndarray = field(init=False)  # int, per item
    item_price: np.ndarray = field(init=False)
    item_available: np.ndarray = field(init=False)  # bool
    item_popularity: np.ndarray = field(init=False)  # sums to 1
    item_factors: np.ndarray = field(init=False)  # items x factors
    user_factors: np.ndarray = field(init=False)  # users x factors
    user_category_affinity: np.ndarray = field(init=False)  # users x categories, rows sum to 1
    user_activity: np.ndarray = field(init=False)  # sums to 1

    def __post_init__(self) -> None:
        cfg = self.config
        self.end = (cfg.end or datetime.now(UTC)).astimezone(UTC)
        rng = np.random.default_rng(cfg.seed)
        self.user_ids = [f"u{n}" for n in range(cfg.users)]
        self.item_ids = [f"i{n}" for n in range(cfg.items)]

        # Category sizes are skewed too (a few big departments); every category gets an item.
        cat_weights = rng.dirichlet(np.full(cfg.categories, 2.0))
        cats = np.concatenate(
            [np.arange(cfg.categories), rng.choice(cfg.categories, cfg.items - cfg.categories, p=cat_weights)]
        )
        self.item_category = rng.permutation(cats)
        centres = rng.normal(0.0, 1.0, (cfg.categories, cfg.factors))
        self.item_factors = centres[self.item_category] + rng.normal(0.0, 0.6, (cfg.items, cfg.factors))
        self.item_factors /= math.sqrt(cfg.factors)
        self.user_factors = rng.normal(0.0, 1.0, (cfg.users, cfg.factors))

        ranks = rng.permutation(cfg.items) + 1
        pop = 1.0 / ranks.astype(np.float64) ** cfg.zipf_exponent
        self.item_popularity = pop / pop.sum()
        base_price = rng.lognormal(3.0, 0.8, cfg.categories)
        self.item_price = np.round(base_price[self.item_category] * rng.lognormal(0.0, 0.4, cfg.items), 2)
        self.item_available = rng.random(cfg.items) >= UNAVAILABLE_SHARE

        self.user_category_affinity = rng.dirichlet(
            np.full(cfg.categories, cfg.category_concentration), size=cfg.users
        )
        activity = rng.lognormal(0.0, 1.0, cfg.users)
        self.user_activity = activity / activity.sum()
        self._items_by_category = [np.flatnonzero(self.item_category == c) for c in range(cfg.categories)]
        # Per category, its items' factors (contiguous) and popularity logits, computed once: gathering
        # them on every draw dominated the cost of large catalogs (the values are the same).
        self._category_factors = [self.item_factors[items] for items in self._items_by_category]
        self._category_pop_logits = [
            cfg.popularity_weight * np.log(self.item_popularity[items]) for items in self._items_by_category
        ]
        self._session_seed = int(rng.integers(0, 2**63 - 1))

    # ----- ground truth -------------------------------------------------------------------------

    def user_index(self, user_id: str) -> int:
        if not user_id.startswith("u") or not user_id[1:].isdigit() or int(user_id[1:]) >= self.config.users:
            raise KeyError(f"unknown simulated user {user_id!r}")
        return int(user_id[1:])

    def taste(self, user: int, items: np.ndarray) -> np.ndarray:
        """Latent match of a user with items (dot product of latent factors)."""
        return np.asarray(self.item_factors[items] @ self.user_factors[user])

    def _within_category(self, user: int, category: int) -> tuple[np.ndarray, np.ndarray]:
        items = self._items_by_category[category]
        taste = np.asarray(self._category_factors[category] @ self.user_factors[user])
        logits = self._category_pop_logits[category] + taste / self.config.taste_temperature
        return items, _softmax(logits)

    def true_scores(self, user_id: str) -> np.ndarray:
        """P(the user's next view is item i), for every item (index-aligned with ``item_ids``)."""
        user = self.user_index(user_id)
        scores = np.zeros(self.config.items)
        for category, affinity in enumerate(self.user_category_affinity[user]):
            items, probs = self._within_category(user, category)
            scores[items] = affinity * probs
        return scores

    def true_top_items(self, user_id: str, k: int, *, available_only: bool = True) -> list[str]:
        """The user's k most preferred items under the generating model, best first."""
        scores = self.true_scores(user_id)
        if available_only:
            scores = np.where(self.item_available, scores, -1.0)
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.item_ids[i] for i in order if scores[i] >= 0]

    def top_categories(self, user_id: str, k: int) -> list[str]:
        order = np.argsort(-self.user_category_affinity[self.user_index(user_id)], kind="stable")[:k]
        return [self.category_name(int(c)) for c in order]

    @staticmethod
    def category_name(category: int) -> str:
        return f"c{category}"

    # ----- catalog and events -------------------------------------------------------------------

    def catalog(self) -> list[ItemUpdate]:
        return [
            ItemUpdate(
                item_id=self.item_ids[i],
                title=f"Item {i}",
                category=self.category_name(int(self.item_category[i])),
                price=float(self.item_price[i]),
                available=bool(self.item_available[i]),
            )
            for i in range(self.config.items)
        ]

    def _sessions(self, rng: np.random.Generator) -> list[_Session]:
        cfg = self.config
        budgets: list[int] = []
        remaining = cfg.events
        while remaining > 0:
            size = min(remaining, int(rng.geometric(1.0 / cfg.mean_session_events)))
            budgets.append(size)
            remaining -= size
        users = rng.choice(cfg.users, size=len(budgets), p=self.user_activity)
        end_ms = int(self.end.timestamp() * 1000)
        span_ms = int(cfg.days * 86_400_000)
        starts = np.sort(rng.integers(end_ms - span_ms, end_ms, size=len(budgets)))
        return [
            _Session(index=n, user=int(users[n]), start_ms=int(starts[n]), budget=budgets[n])
            for n in range(len(budgets))
        ]

    def _session_events(
        self, session: _Session, rng: np.random.Generator
    ) -> list[tuple[int, str, str, float]]:
        """(ts_ms, event type, item id, price) for one session, in time order."""
        cfg = self.config
        user = session.user
        affinity = self.user_category_affinity[user]
        focus = int(rng.choice(cfg.categories, p=affinity))
        candidates = np.empty(session.budget, dtype=np.int64)
        other = rng.random(session.budget) >= SESSION_FOCUS
        cats = np.where(other, rng.choice(cfg.categories, size=session.budget, p=affinity), focus)
        for category in np.unique(cats):
            slots = np.flatnonzero(cats == category)
            items, probs = self._within_category(user, int(category))
            candidates[slots] = rng.choice(items, size=len(slots), p=probs)
        match = 2.0 / (1.0 + np.exp(-self.taste(user, candidates)))  # mean about 1

        out: list[tuple[int, str, str, float]] = []
        ts = session.start_ms
        for n in range(session.budget):
            if len(out) >= session.budget:
                break
            item = int(candidates[n])
            item_id, price, m = self.item_ids[item], float(self.item_price[item]), float(match[n])
            steps = [(EventType.VIEW, 0)]
            if rng.random() < min(0.95, P_CLICK * m):
                steps.append((EventType.CLICK, 2_000))
                if rng.random() < min(0.9, P_FAVORITE * m):
                    steps.append((EventType.FAVORITE, 3_000))
                if self.item_available[item] and rng.random() < min(0.9, P_CART * m):
                    steps.append((EventType.ADD_TO_CART, 10_000))
                    if rng.random() < min(0.95, P_PURCHASE * m):
                        steps.append((EventType.PURCHASE, 60_000))
            for kind, mean_gap_ms in steps:
                if len(out) >= session.budget:
                    break
                ts += int(rng.exponential(mean_gap_ms or 20_000)) + 1
                out.append((ts, kind.value, item_id, price))
        return out

    def _entries(self) -> Iterator[tuple[int, int, str, str, str, float, str]]:
        """(ts_ms, number, event type, user id, item id, price, session id) of every event, in order."""
        cfg = self.config
        rng = np.random.default_rng(self._session_seed)
        sessions = self._sessions(rng)
        end_ms = int(self.end.timestamp() * 1000)
        pending: list[tuple[int, int, str, str, str, float, str]] = []
        seq = 0
        for session in sessions:
            while pending and pending[0][0] <= session.start_ms:
                yield heapq.heappop(pending)
            session_id = f"sim{cfg.seed}-s{session.index}"
            user_id = self.user_ids[session.user]
            for ts, kind, item_id, price in self._session_events(session, rng):
                heapq.heappush(pending, (min(ts, end_ms), seq, kind, user_id, item_id, price, session_id))
                seq += 1
        while pending:
            yield heapq.heappop(pending)

    def interactions(self) -> Iterator[tuple[str, str, str, None, int]]:
        """``events()`` as (user_id, item_id, event_type, value, ts_ms) rows, the same events in the same
        order without building (and validating) an event object each: what a training benchmark of
        millions of events folds in."""
        for ts, _number, kind, user_id, item_id, _price, _session in self._entries():
            yield user_id, item_id, kind, None, ts

    def events(self) -> Iterator[InteractionEvent]:
        """Every event of the simulation in timestamp order (ties keep generation order)."""
        cfg = self.config
        end_ms = int(self.end.timestamp() * 1000)

        def emit(entry: tuple[int, int, str, str, str, float, str]) -> InteractionEvent:
            ts, number, kind, user_id, item_id, price, session_id = entry
            props: dict[str, Scalar] | None = (
                {"price": price} if kind in (EventType.PURCHASE, EventType.ADD_TO_CART) else None
            )
            return InteractionEvent(
                # The end of the period is part of the id: a re-run at another "now" shifts every
                # timestamp, so it is other events, not a conflicting re-send of the same ones.
                event_id=deterministic_event_id(
                    "sim", cfg.seed, cfg.users, cfg.items, cfg.events, cfg.categories, end_ms, number
                ),
                event_type=EventType(kind),
                user_id=user_id,
                item_id=item_id,
                timestamp=datetime.fromtimestamp(ts / 1000, tz=UTC),
                session_id=session_id,
                properties=props,
            )

        for entry in self._entries():
            yield emit(entry)

    @property
    def start(self) -> datetime:
        return self.end - timedelta(days=self.config.days)


# ----- the click model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickModelConfig:
    """Defaults put a perfect top-10 list at about 65% of lists clicked, a random one at about 6.5%
    and the most popular items at about 32% (measured on a 2,000-item storefront), so a recommender's quality
    shows in its click-through rate the way it does in a shop."""

    # Position bias: the shopper examines position p (0-based) with probability 1 / (1 + p)^eta.
    eta: float = 1.0
    # attractiveness = logistic(intercept + slope * affinity), affinity = log(true lift of the item).
    intercept: float = -3.0
    slope: float = 0.5
    # After a click: P(add to cart) = cart_scale * attractiveness; after that
    # P(purchase) = purchase_scale * attractiveness (unavailable items are never put in the cart).
    cart_scale: float = 0.5
    purchase_scale: float = 0.6

    def __post_init__(self) -> None:
        if self.eta < 0:
            raise ValueError("eta must not be negative")
        if self.slope < 0:
            raise ValueError("slope must not be negative: a better match must not be less attractive")
        for name in ("cart_scale", "purchase_scale"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


@dataclass(frozen=True)
class Reaction:
    """One thing a shopper did with a shown list: ``event_type`` on the item at ``position``."""

    position: int
    item_id: str
    event_type: EventType


class ClickModel:
    """Pure and seeded: the shopper's reactions to a shown list depend only on the seed, the shopper,
    the list and ``draw`` (the shopper's n-th list), never on the order in which lists are judged, so
    a concurrent load generator gets the same clicks as a sequential one."""

    def __init__(self, shop: Storefront, config: ClickModelConfig | None = None, seed: int = 0) -> None:
        if seed < 0:
            raise ValueError("seed must not be negative")
        self.shop = shop
        self.config = config or ClickModelConfig()
        self.seed = seed
        self._item_index = {item_id: n for n, item_id in enumerate(shop.item_ids)}

    def examine(self, positions: np.ndarray | int) -> np.ndarray:
        """P(the shopper looks at a position), 1 at the top and falling with the position."""
        return np.asarray(1.0 / (1.0 + np.asarray(positions, dtype=np.float64)) ** self.config.eta)

    def affinity(self, user_id: str, item_ids: list[str]) -> np.ndarray:
        """The shopper's true affinity to each item: log of how much likelier their next view lands on
        it than on an average item (0 = average; -inf for an id the storefront does not have)."""
        lift = self.shop.true_scores(user_id) * self.shop.config.items
        out = np.full(len(item_ids), -np.inf)
        for n, item_id in enumerate(item_ids):
            index = self._item_index.get(item_id)
            if index is not None and lift[index] > 0:
                out[n] = math.log(lift[index])
        return out

    def attractiveness(self, user_id: str, item_ids: list[str]) -> np.ndarray:
        """P(click | examined): a logistic of the true affinity (0 for unknown items)."""
        cfg = self.config
        affinity = self.affinity(user_id, item_ids)
        known = np.isfinite(affinity)
        logits = cfg.intercept + cfg.slope * np.where(known, affinity, 0.0)
        return np.asarray(np.where(known, 1.0 / (1.0 + np.exp(-logits)), 0.0))

    def click_probabilities(self, user_id: str, item_ids: list[str]) -> np.ndarray:
        return np.asarray(self.examine(np.arange(len(item_ids))) * self.attractiveness(user_id, item_ids))

    def react(self, user_id: str, item_ids: list[str], draw: int = 0) -> list[Reaction]:
        """What the shopper does with the list ``item_ids`` (best first): clicks, then add-to-carts and
        purchases of clicked items, in list order."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, self.shop.user_index(user_id), draw])
        attract = self.attractiveness(user_id, item_ids)
        clicks = rng.random(len(item_ids)) < self.examine(np.arange(len(item_ids))) * attract
        cart_draws, purchase_draws = rng.random(len(item_ids)), rng.random(len(item_ids))
        out: list[Reaction] = []
        for position in np.flatnonzero(clicks):
            p, item_id = int(position), item_ids[int(position)]
            out.append(Reaction(p, item_id, EventType.CLICK))
            index = self._item_index[item_id]
            if self.shop.item_available[index] and cart_draws[p] < cfg.cart_scale * attract[p]:
                out.append(Reaction(p, item_id, EventType.ADD_TO_CART))
                if purchase_draws[p] < cfg.purchase_scale * attract[p]:
                    out.append(Reaction(p, item_id, EventType.PURCHASE))
        return out
