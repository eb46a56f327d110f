"""Pure helpers behind `streamrec demo`'s output: which users to show, which items to click and what
changed. No IO, so they are unit-tested without servers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.events import InteractionEvent


def most_active_users(events: Iterable[InteractionEvent], n: int) -> list[str]:
    """The n users with the most events (ties by id), the ones with the most telling recommendations."""
    counts = Counter(e.user_id for e in events)
    return [u for u, _ in sorted(counts.items(), key=lambda p: (-p[1], p[0]))[:n]]


def last_event_per_user(events: Sequence[InteractionEvent]) -> list[str]:
    """The id of each user's last event in send order.

    Events are keyed by user id, so one user's events share a partition and are stored in order: once a
    user's last event is stored, all of that user's events are.
    """
    last: dict[str, str] = {}
    for event in events:
        last[event.user_id] = event.event_id
    return list(last.values())


def choose_clicks(
    user: str,
    current: Sequence[str],
    candidates: Iterable[str],
    history: Iterable[str],
    n: int = 3,
) -> list[str]:
    """Items to click for ``user``: the first ``n`` candidates not already recommended or interacted with."""
    blocked = set(current) | set(history)
    picks: list[str] = []
    for item in candidates:
        if item not in blocked and item not in picks:
            picks.append(item)
            if len(picks) == n:
                break
    return picks


def item_ids(response: Mapping[str, Any]) -> list[str]:
    return [str(i["item_id"]) for i in response.get("items", [])]


def changed(before: Sequence[str], after: Sequence[str]) -> bool:
    return list(before) != list(after)


def reason_text(reason: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    kind = str(reason.get("kind", "?"))
    if kind in ("similar_to", "content") and reason.get("item_id"):
        other = str(reason["item_id"])
        text = f"similar to {titles.get(other, other)}" + (
            " (by catalog content)" if kind == "content" else ""
        )
    else:
        text = {
            "personalized": "personalized (long-term taste)",
            "session": "session (recent activity)",
            "popular": "popular (top-up)",
            "pinned": "pinned",
            "content": "new item (catalog content)",
            "segment_popular": f"popular in segment {reason.get('segment', '?')}",
        }.get(kind, kind)
    rules = reason.get("rules") or []
    if rules:
        text += " · " + ", ".join(f"rule {r.get('rule_id')} ({r.get('kind')})" for r in rules)
    return text


def click_events(user: str, items: Sequence[str], ids: Sequence[str], ts_ms: int) -> list[dict[str, Any]]:
    """Wire-format click events, one millisecond apart so their order is unambiguous."""
    return [
        {
            "event_id": event_id,
            "event_type": "click",
            "user_id": user,
            "item_id": item,
            "timestamp": ts_ms + n,
            "session_id": f"demo-{user}",
        }
        for n, (item, event_id) in enumerate(zip(items, ids, strict=True))
    ]
