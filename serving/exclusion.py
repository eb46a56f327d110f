"""Pure exclusion policy: which items a list must leave out for a shopper, from what they did.

The product setting (``serving.exclusion``) says, per surface, whether purchased items and items the
shopper interacted with recently are left out; two request options override it:

* ``include_purchased``: true lets purchased items through (consumables), false leaves them out;
  unset follows the surface's ``purchased`` setting. A purchase is an interaction too, so true also
  lets them through the recent and seen exclusions.
* ``exclude_seen``: true leaves out every item the shopper ever interacted with (the ``seen`` set);
  false turns the recent exclusion off; unset follows the surface's ``recent`` setting.

The recent interactions still steer the list (the session vector in ``serving.ranking``); they are
only kept from appearing in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from core.recent import RecentEvent
from core.settings import ExclusionSettings, SurfaceExclusion


def recent_items(recent: Sequence[RecentEvent], policy: ExclusionSettings, now_ms: int) -> set[str]:
    """Items among the newest ``policy.recent_events`` interactions that fall inside the window."""
    window_ms = policy.recent_window_s * 1000.0
    return {
        ev.item_id
        for ev in recent[: policy.recent_events]
        if window_ms <= 0 or now_ms - ev.ts_ms <= window_ms
    }


def excluded_items(
    surface: SurfaceExclusion,
    policy: ExclusionSettings,
    *,
    recent: Sequence[RecentEvent],
    purchased: Iterable[str],
    seen: Iterable[str] | None,
    now_ms: int,
    include_purchased: bool | None = None,
    exclude_seen: bool | None = None,
) -> frozenset[str]:
    """The items to leave out (the request's own ``exclude`` list is added by the caller).

    ``seen`` is only needed (and only read from Redis) when ``exclude_seen`` is true."""
    block_purchased = surface.purchased if include_purchased is None else not include_purchased
    bought = frozenset(purchased)
    interacted: set[str] = set()
    if exclude_seen is True:
        interacted.update(seen or ())
        interacted.update(ev.item_id for ev in recent)
    elif exclude_seen is None and surface.recent:
        interacted = recent_items(recent, policy, now_ms)
    if block_purchased:
        return frozenset(interacted | bought)
    # Purchased items were asked for: no other exclusion takes them out again.
    return frozenset(interacted - bought)


def needs_seen(exclude_seen: bool | None) -> bool:
    return exclude_seen is True
