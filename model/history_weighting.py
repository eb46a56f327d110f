"""How a user's events become model input: the pair weighting and the history order.

``ModelSettings.input_weighting`` and ``ModelSettings.history_order`` (core.settings) name the choices;
training (``model.interactions``), the retrain gate and serving's fold-in (``model.trained_model``) all
go through this module, so a setting means the same thing everywhere. numpy only: serving imports it.

- ``linear``: the pair's summed event weight as is (production's behaviour before these settings).
- ``binary``: 1 for every pair with a positive summed weight (the offline protocol's binary input).
- ``log``: ``1 + ln(max(sum, 1))`` (the quality benchmark's log-strength mode,
  ``tooling.offline.input_weights``): a purchase (5) still outweighs a view (1), a streak of 50 views
  counts about 4.9 instead of 50.

``history_order`` says which timestamp of a pair orders the history for the recency boost: ``latest``
(its newest event; production's behaviour before these settings) or ``first`` (its oldest event; the
offline protocol's order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, cast

import numpy as np

Weighting = Literal["linear", "binary", "log"]
Order = Literal["latest", "first"]
WEIGHTINGS: tuple[Weighting, ...] = ("linear", "binary", "log")
ORDERS: tuple[Order, ...] = ("latest", "first")
DEFAULT_WEIGHTING: Weighting = "linear"
DEFAULT_ORDER: Order = "latest"


def check_weighting(name: str) -> Weighting:
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown input weighting {name!r}; expected one of {', '.join(WEIGHTINGS)}")
    return cast(Weighting, name)


def check_order(name: str) -> Order:
    if name not in ORDERS:
        raise ValueError(f"unknown history order {name!r}; expected one of {', '.join(ORDERS)}")
    return cast(Order, name)


def weigh_pairs(summed: np.ndarray, weighting: str) -> np.ndarray:
    """Model input per pair from its summed (positive) event weight, float32."""
    w = check_weighting(weighting)
    data = np.asarray(summed, dtype=np.float64)
    if w == "binary":
        out = np.ones_like(data)
    elif w == "log":
        out = 1.0 + np.log(np.maximum(data, 1.0))
    else:
        out = data
    return out.astype(np.float32)


def is_per_event(weighting: str, order: str) -> bool:
    """True for the defaults: the fold-in keeps one entry per event, as serving did before these
    settings existed (a repeated item counts at each of its positions)."""
    return weighting == DEFAULT_WEIGHTING and order == DEFAULT_ORDER


def fold_history(events: Iterable[tuple[str, float]], weighting: str, order: str) -> list[tuple[str, float]]:
    """A history of (item, event weight) ordered oldest first, as the model's input: with the default
    settings unchanged (per event); otherwise one entry per item, as training builds its pairs: events
    with a non-positive or non-finite weight are dropped (training skips them), the rest summed and
    weighed by ``weighting``, and the items ordered by their latest or first event (``order``)."""
    check_weighting(weighting)
    check_order(order)
    if is_per_event(weighting, order):
        return list(events)
    sums: dict[str, float] = {}
    position: dict[str, int] = {}
    for pos, (item, weight) in enumerate(events):
        if not (np.isfinite(weight) and weight > 0):
            continue
        sums[item] = sums.get(item, 0.0) + float(weight)
        if order == "latest" or item not in position:
            position[item] = pos
    items = sorted(position, key=position.__getitem__)
    weights = weigh_pairs(np.array([sums[i] for i in items], dtype=np.float64), weighting)
    return list(zip(items, weights.tolist(), strict=True))
