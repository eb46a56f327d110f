"""Popularity per shopper segment, and whether it beats global popularity for shoppers without history.

Pure (numpy only). Retrain counts the training events' weights (``core.event_weights``, the rule the
consumer's popularity counters use) per item, once over everyone (global popularity) and once per value
of the configured segment attribute (``model.segment_attribute``), and judges the two on the shoppers
a popularity list is for: those new in the held-out period. Each such shopper's first
``FIRST_ITEMS`` distinct items are the targets; NDCG@10 of their segment's list (topped up from the
global list, as serving tops it up) is compared with that of the global list, on the same shoppers.
Segment lists win only when strictly better on at least ``min_eval_users`` shoppers: without that
evidence serving keeps global popularity, the behaviour it had before segments existed.

A segment gets a list only when at least ``min_users`` training shoppers carry it, so a list never
describes one or two identifiable people's purchases and is not noise.

The result travels in the artifact as ``segment_popularity.json`` (JSON, no pickle): the attribute, the
decision with its figures, and the per-segment lists.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import ArtifactError
from core.event_table import EventTable
from core.event_weights import event_weights
from core.settings import EventWeights
from model.metrics import ndcg_at_k, paired_bootstrap

FILE_NAME = "segment_popularity.json"
FORMAT_VERSION = 1
EVAL_K = 10
# A new shopper's first few distinct items: what a cold-start list is for (later items already have
# a history to personalise from).
FIRST_ITEMS = 5
# Items kept per list: serving answers at most serving.max_k (200) items.
DEPTH = 200
# Segments kept (the most populous first): bounds the artifact and serving's memory.
MAX_SEGMENTS = 1000

Scored = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class SegmentPopularity:
    attribute: str
    wins: bool
    reason: str
    segment_ndcg: float | None = None
    global_ndcg: float | None = None
    eval_users: int = 0
    lists: Mapping[str, Scored] = field(default_factory=dict)
    # 95% paired bootstrap interval of segment minus global NDCG@10 over the evaluated shoppers.
    interval: tuple[float, float] | None = None

    def list_for(self, segment: str) -> Scored | None:
        return self.lists.get(segment)

    def summary(self) -> dict[str, Any]:
        """The decision without the lists (the registry record's metrics)."""
        return {
            "attribute": self.attribute,
            "wins": self.wins,
            "reason": self.reason,
            f"segment_ndcg@{EVAL_K}": self.segment_ndcg,
            f"global_ndcg@{EVAL_K}": self.global_ndcg,
            "eval_users": self.eval_users,
            "difference_interval": list(self.interval) if self.interval is not None else None,
            "segments": len(self.lists),
        }

    def to_bytes(self) -> bytes:
        doc = {
            "format_version": FORMAT_VERSION,
            **self.summary(),
            "lists": {seg: [[item, score] for item, score in items] for seg, items in self.lists.items()},
        }
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SegmentPopularity:
        """Raises ``ArtifactError`` for a file this code cannot read."""
        try:
            doc = json.loads(data)
            if doc.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unknown format_version {doc.get('format_version')!r}")
            lists = {
                str(seg): tuple((str(item), float(score)) for item, score in items)
                for seg, items in doc["lists"].items()
            }
            return cls(
                attribute=str(doc["attribute"]),
                wins=bool(doc["wins"]),
                reason=str(doc["reason"]),
                segment_ndcg=_opt_float(doc.get(f"segment_ndcg@{EVAL_K}")),
                global_ndcg=_opt_float(doc.get(f"global_ndcg@{EVAL_K}")),
                eval_users=int(doc.get("eval_users", 0)),
                lists=lists,
                interval=_interval(doc.get("difference_interval")),
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ArtifactError(f"{FILE_NAME} is unreadable: {exc}") from exc


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _interval(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    lo, hi = value
    return float(lo), float(hi)


def segments_from_files(files: Mapping[str, bytes]) -> SegmentPopularity | None:
    """The artifact's segment popularity, or None for an artifact published without it."""
    data = files.get(FILE_NAME)
    return None if data is None else SegmentPopularity.from_bytes(data)


def _ranked(ids: np.ndarray, scores: np.ndarray, depth: int) -> Scored:
    """The ``depth`` best (id, score) with a positive score, best first, ties by id (``ids`` sorted)."""
    order = np.lexsort((np.arange(len(scores)), -scores))[:depth]
    return tuple((str(ids[i]), float(scores[i])) for i in order.tolist() if scores[i] > 0)


def popularity_lists(
    train: EventTable,
    user_segments: Mapping[str, str],
    weights: EventWeights,
    *,
    min_users: int,
    depth: int = DEPTH,
    max_segments: int = MAX_SEGMENTS,
) -> tuple[Scored, dict[str, Scored]]:
    """Global popularity and popularity per segment over ``train`` (weighted event counts)."""
    w = event_weights(train.event_type, train.value, weights)
    users, u_inv = np.unique(train.user_id, return_inverse=True)
    items, i_inv = np.unique(train.item_id, return_inverse=True)
    u_inv, i_inv = u_inv.reshape(-1), i_inv.reshape(-1)
    counted = w > 0
    global_scores = np.bincount(i_inv[counted], weights=w[counted], minlength=len(items))
    global_list = _ranked(items, global_scores, depth)

    members: dict[str, int] = {}
    user_segment = [user_segments.get(str(u)) for u in users.tolist()]
    for seg in user_segment:
        if seg is not None:
            members[seg] = members.get(seg, 0) + 1
    kept = sorted((s for s, n in members.items() if n >= min_users), key=lambda s: (-members[s], s))
    code = {seg: c for c, seg in enumerate(kept[:max_segments])}
    user_code = np.array([code.get(s, -1) if s is not None else -1 for s in user_segment], dtype=np.int64)
    row_code = user_code[u_inv] if len(users) else np.zeros(0, dtype=np.int64)
    mask = counted & (row_code >= 0)
    n_items = max(len(items), 1)
    keys, k_inv = np.unique(row_code[mask] * n_items + i_inv[mask], return_inverse=True)
    sums = np.bincount(k_inv.reshape(-1), weights=w[mask], minlength=len(keys))
    seg_of, item_of = keys // n_items, keys % n_items
    lists: dict[str, Scored] = {}
    names = list(code)
    for c, seg in enumerate(names):
        sel = seg_of == c
        lists[seg] = _ranked(items[item_of[sel]], sums[sel], depth)
    return global_list, {seg: items_ for seg, items_ in lists.items() if items_}


def new_user_first_items(table: EventTable, cut_ms: int, n: int = FIRST_ITEMS) -> dict[str, set[str]]:
    """Per shopper with no event before ``cut_ms`` (new in the held-out period): their first ``n``
    distinct items from ``cut_ms`` on, by time."""
    before = table.ts_ms < cut_ms
    known = np.unique(table.user_id[before])
    new = ~before & ~np.isin(table.user_id, known)
    rows = np.flatnonzero(new)
    order = rows[np.lexsort((table.ts_ms[rows], table.user_id[rows]))]
    firsts: dict[str, list[str]] = {}
    for pos in order.tolist():
        user, item = str(table.user_id[pos]), str(table.item_id[pos])
        got = firsts.setdefault(user, [])
        if len(got) < n and item not in got:
            got.append(item)
    return {user: set(items) for user, items in firsts.items()}


def topped_up(first: Sequence[tuple[str, float]], rest: Sequence[tuple[str, float]], k: int) -> list[str]:
    """``first``'s items, then ``rest``'s not already there, up to ``k`` (how serving fills a list)."""
    out: list[str] = []
    for item, _ in [*first, *rest]:
        if item not in out:
            out.append(item)
            if len(out) == k:
                break
    return out


def _ndcg(ranked: list[list[str]], targets: list[set[str]]) -> np.ndarray:
    """NDCG@10 per shopper."""
    hits = np.zeros((len(ranked), EVAL_K), dtype=bool)
    for row, (items, wanted) in enumerate(zip(ranked, targets, strict=True)):
        hits[row, : len(items)] = [i in wanted for i in items]
    n_test = np.array([len(t) for t in targets], dtype=np.float64)
    return ndcg_at_k(hits, n_test, EVAL_K)


def cold_start_ndcgs(
    global_list: Scored,
    lists: Mapping[str, Scored],
    targets: Mapping[str, set[str]],
    user_segments: Mapping[str, str],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The evaluated shoppers (new ones whose segment has a list) and, per shopper, NDCG@10 of their
    segment's list and of the global list."""
    users = sorted(u for u in targets if user_segments.get(u) in lists)
    wanted = [targets[u] for u in users]
    seg_ranked = [topped_up(lists[user_segments[u]], global_list, EVAL_K) for u in users]
    glob = topped_up(global_list, (), EVAL_K)
    return users, _ndcg(seg_ranked, wanted), _ndcg([glob] * len(users), wanted)


def decide_segments(
    attribute: str,
    global_list: Scored,
    lists: Mapping[str, Scored],
    targets: Mapping[str, set[str]],
    user_segments: Mapping[str, str],
    *,
    min_eval_users: int,
) -> SegmentPopularity:
    """Segment lists against the global list on the new shoppers whose segment has a list."""
    users, seg_each, glob_each = cold_start_ndcgs(global_list, lists, targets, user_segments)
    if not lists:
        why = f"no value of '{attribute}' is carried by enough training shoppers to have a list"
        return SegmentPopularity(attribute, False, f"global popularity kept: {why}", eval_users=len(users))
    if not users:
        return SegmentPopularity(
            attribute,
            False,
            "global popularity kept: no shopper new in the held-out period has a segment with a list",
            lists=dict(lists),
        )
    seg_ndcg, glob_ndcg = float(seg_each.mean()), float(glob_each.mean())
    _, lo, hi = paired_bootstrap(seg_each, glob_each)
    figures = (
        f"NDCG@{EVAL_K} {seg_ndcg:.4f} (segment) vs {glob_ndcg:.4f} (global) on {len(users)} new "
        f"shoppers, difference interval [{lo:+.4f}, {hi:+.4f}]"
    )
    if len(users) < min_eval_users:
        wins, reason = (
            False,
            f"global popularity kept: too little evidence, {figures} (need {min_eval_users})",
        )
    elif math.isfinite(lo) and lo > 0.0:
        # "Beats" means the paired interval excludes zero, not a higher mean: on a few hundred new
        # shoppers a mean difference is often noise, and a noisy win would replace a sound default.
        wins, reason = True, f"segment popularity wins: {figures}"
    else:
        wins, reason = False, f"global popularity kept: {figures}"
    return SegmentPopularity(
        attribute, wins, reason, seg_ndcg, glob_ndcg, len(users), dict(lists), interval=(lo, hi)
    )
