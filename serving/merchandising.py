"""Merchandising in serving: the request's item filters and the active rules, applied to every list.

``RulesHolder`` polls the rule store (every ``serving.catalog_poll_s``) and holds the active
``RuleSet``; ``Merchandiser.for_request`` takes it once per request, so a list is always built under
one rules version even when a change lands while it is computed. A ``Merch`` then

- says which items a list may not show (``blocks``: request filters and block rules, read from the
  catalog snapshot) — services hand it to ``Filters.extra`` so every candidate source skips them;
- says how many candidates to rank (``fetch``) so ``k`` is still filled after filters and rules;
- arranges the ranked candidates (``finish``: boost, bury, diversity cap, pins; core.merch_rules)
  and tags each item a rule touched, which its ``reason`` then shows;
- gives the part of a cache key that changes with the rules version (and, with filters, the catalog).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from core.merch_filters import NO_FILTER, ItemFacts, ItemFilter
from core.merch_rules import EMPTY, RuleSet, arrange, fetch_size
from serving.catalog import CatalogSnapshot
from serving.polling import poll_in_thread
from serving.ranking import Ranked
from storage.merch_rules import RuleStore

log = logging.getLogger(__name__)
SHARE_TTL_S = 10.0
# How deep filters and reordering rules look into a list held in memory (see ``Merch.fetch``).
IN_MEMORY_FETCH = 1000
MAX_SHARES = 1000


class RulesHolder:
    def __init__(self, store: RuleStore) -> None:
        self.store = store
        self.current: RuleSet = EMPTY

    def poll_once(self) -> None:
        """Blocking (worker thread): take the stored set when its version differs."""
        latest = self.store.current()
        if latest.version != self.current.version:
            log.info("event=rules_changed version=%d rules=%d", latest.version, len(latest.rules))
            self.current = latest

    async def run(self, interval_s: float) -> None:
        await poll_in_thread(self.poll_once, interval_s, "rules_poll_failed")

    async def refresh(self) -> None:
        await asyncio.to_thread(self.poll_once)


@dataclass(frozen=True)
class Merch:
    item_filter: ItemFilter
    rules: RuleSet
    catalog: CatalogSnapshot | None
    # The share of the catalog the filter keeps (1.0 without a filter).
    share: float = 1.0

    def facts(self, item_id: str) -> ItemFacts | None:
        return self.catalog.get(item_id) if self.catalog is not None else None

    def blocks(self, item_id: str) -> bool:
        item = self.facts(item_id)
        return not self.item_filter.passes(item) or self.rules.blocked(item_id, item)

    @property
    def predicate(self) -> Callable[[str], bool] | None:
        """For ``Filters.extra``: None when nothing here removes an item (the hot path stays as is)."""
        if self.item_filter.active or self.rules.of("block"):
            return self.blocks
        return None

    def fetch(self, k: int, *, in_memory: bool = False) -> int:
        """Candidates to rank for ``k`` answers. ``in_memory``: the candidates are a list already
        held (popularity, trending, new arrivals), so a deep one costs little and fills more lists."""
        size = fetch_size(k, self.rules, self.item_filter.active)
        if in_memory and size > k + len(self.rules.of("pin")):
            return max(size, IN_MEMORY_FETCH)
        return size

    def cache_key(self) -> str:
        key = f"r{self.rules.version}"
        if self.item_filter.active:
            digest = hashlib.blake2b(self.item_filter.key().encode(), digest_size=8).hexdigest()
            # Prices and properties change with the catalog: a filtered list keys on its version too.
            version = self.catalog.version if self.catalog is not None else 0
            key += f":f{digest}:c{version}"
        return key

    def may_pin(self, item_id: str, blocked: Callable[[str], bool]) -> bool:
        """A pinned item is shown only when the catalog knows it, it is not unavailable and it passes
        the request's filters (``blocked``: the endpoint's own ``Filters.blocks``)."""
        item = self.catalog.get(item_id) if self.catalog is not None else None
        return item is not None and item.available is not False and not blocked(item_id)

    def finish(
        self, ranked: Sequence[Ranked], k: int, blocked: Callable[[str], bool], *, keep_rest: bool = False
    ) -> list[Ranked]:
        """The top ``k`` of ``ranked`` (best first, already filtered) under the rules; ``keep_rest``:
        candidates the diversity cap left out follow (re-ranking keeps every candidate)."""
        if not self.rules.rules:
            return list(ranked[:k])
        placed = arrange(
            [r.item_id for r in ranked],
            k,
            self.rules,
            self.facts,
            lambda i: self.may_pin(i, blocked),
            keep_rest=keep_rest,
        )
        out: list[Ranked] = []
        for p in placed:
            base = ranked[p.index] if p.index is not None else Ranked(p.item_id, 0.0, "pinned")
            out.append(replace(base, rules=p.tags) if p.tags else base)
        return out


NO_MERCH = Merch(NO_FILTER, EMPTY, None)


class Merchandiser:
    """Builds each request's ``Merch`` from the catalog snapshot and the active rules."""

    def __init__(self, catalog: CatalogSnapshot | None, rules: RulesHolder | None) -> None:
        self.catalog = catalog
        self.rules = rules
        self._shares: dict[str, tuple[float, float]] = {}

    def known_property(self, name: str) -> bool:
        # Before the catalog is loaded every name is accepted: refusing all would be worse.
        if self.catalog is None or not self.catalog.loaded:
            return True
        return self.catalog.has_property(name)

    def _share(self, item_filter: ItemFilter) -> float:
        if not item_filter.active or self.catalog is None:
            return 1.0
        key = item_filter.key()
        held = self._shares.get(key)
        now = time.monotonic()
        if held is not None and now - held[0] <= SHARE_TTL_S:
            return held[1]
        sample = self.catalog.sample()
        passing = sum(1 for iid in sample if item_filter.passes(self.catalog.get(iid)))
        share = max(passing, 1) / max(len(sample), 1)
        if len(self._shares) > MAX_SHARES:
            self._shares.clear()
        self._shares[key] = (now, share)
        return share

    def for_request(self, item_filter: ItemFilter = NO_FILTER) -> Merch:
        rules = self.rules.current if self.rules is not None else EMPTY
        return Merch(item_filter, rules, self.catalog, self._share(item_filter))
