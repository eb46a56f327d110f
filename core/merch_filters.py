"""Item filters of every list endpoint: ``price_min``, ``price_max``, ``brand`` and ``filter=prop:value``.

One grammar everywhere (the HTTP routes, the export, the CLI): ``parse_filters`` turns the raw query
values into an ``ItemFilter`` or raises ``FilterError`` with a sentence a storefront developer can act
on (the API answers it as a 400).

- ``filter=prop:value`` (repeatable): the item's ``prop`` equals ``value``. ``prop`` is a top-level
  catalog field (title, category, brand, price, available) or a key of the item's ``properties``;
  only the first ``:`` separates, so a value may hold more. Several filters on the same property
  match any of their values (colour:red, colour:blue); filters on different properties must all match.
- Comparison follows the item's value: text case-insensitively, numbers numerically (``size:42``
  matches 42 and 42.0), booleans as ``true``/``false``. An item without the property never matches.
- ``brand=X`` is ``filter=brand:X``; ``price_min``/``price_max`` bound the price (inclusive); an
  item without a price does not pass a price bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Catalog fields a filter may name besides the item properties.
TOP_LEVEL_FIELDS = frozenset({"title", "category", "brand", "price", "available"})
MAX_FILTERS = 20
MAX_FILTER_CHARS = 512


class FilterError(ValueError):
    """A filter the grammar does not accept; the message says which and why."""


class ItemFacts(Protocol):
    """What a filter or rule reads of an item (serving.catalog.ItemMeta)."""

    @property
    def price(self) -> float | None: ...

    @property
    def category(self) -> str | None: ...

    def value(self, name: str) -> Any: ...


def value_matches(actual: Any, wanted: str) -> bool:
    """Does the item's ``actual`` value equal the filter's text ``wanted`` (see the module doc)?"""
    if actual is None:
        return False
    if isinstance(actual, bool):
        return wanted.strip().lower() == ("true" if actual else "false")
    if isinstance(actual, int | float):
        try:
            number = float(wanted)
        except ValueError:
            return False
        return math.isfinite(number) and float(actual) == number
    return str(actual).casefold() == wanted.casefold()


@dataclass(frozen=True)
class ItemFilter:
    price_min: float | None = None
    price_max: float | None = None
    # property -> accepted values (any of them)
    equals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.price_min is not None or self.price_max is not None or bool(self.equals)

    def key(self) -> str:
        """A stable text of the filter for cache keys ('' when there is none)."""
        if not self.active:
            return ""
        parts = [f"p{self.price_min}-{self.price_max}"]
        parts += [f"{name}={'|'.join(sorted(vals))}" for name, vals in sorted(self.equals.items())]
        return ";".join(parts)

    def passes(self, item: ItemFacts | None) -> bool:
        if not self.active:
            return True
        if item is None:
            return False  # nothing known about it: it cannot be shown to match
        if self.price_min is not None or self.price_max is not None:
            price = item.price
            if price is None:
                return False
            if self.price_min is not None and price < self.price_min:
                return False
            if self.price_max is not None and price > self.price_max:
                return False
        return all(any(value_matches(item.value(n), v) for v in vals) for n, vals in self.equals.items())


NO_FILTER = ItemFilter()


def _price(name: str, raw: float | str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise FilterError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0:
        raise FilterError(f"{name} must be a finite number >= 0, got {raw!r}")
    return value


def parse_filters(
    *,
    price_min: float | str | None = None,
    price_max: float | str | None = None,
    brand: str | None = None,
    filters: Iterable[str] = (),
    known: Callable[[str], bool] = lambda _name: True,
) -> ItemFilter:
    """Check and build the filter; ``known(prop)`` says whether any catalog item has that property
    (an unknown one is almost always a typo, so it is refused instead of silently matching nothing)."""
    low, high = _price("price_min", price_min), _price("price_max", price_max)
    if low is not None and high is not None and low > high:
        raise FilterError(f"price_min ({low:g}) is greater than price_max ({high:g})")
    equals: dict[str, list[str]] = {}
    raw_filters = list(filters)
    if len(raw_filters) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} filter parameters, got {len(raw_filters)}")
    if brand is not None:
        if not brand.strip():
            raise FilterError("brand must not be blank")
        equals.setdefault("brand", []).append(brand)
    for raw in raw_filters:
        if len(raw) > MAX_FILTER_CHARS:
            raise FilterError(f"filter {raw[:40]!r}... is longer than {MAX_FILTER_CHARS} characters")
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise FilterError(
                f"filter {raw!r} is malformed: expected filter=property:value (e.g. colour:red)"
            )
        if name == "price":
            raise FilterError("filter on price is not supported: use price_min and price_max")
        if name not in TOP_LEVEL_FIELDS and not known(name):
            raise FilterError(f"filter {raw!r} names the unknown property {name!r}: no catalog item has it")
        equals.setdefault(name, []).append(value)
    return ItemFilter(low, high, {n: tuple(dict.fromkeys(v)) for n, v in equals.items()})
