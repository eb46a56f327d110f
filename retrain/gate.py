"""The quality gate: pure functions, no IO.

Protocol (the same for the candidate and the champion, so the comparison is fair):

1. The window's events are cut by time: the last ``holdout_fraction`` of events (by timestamp) are held
   out, the candidate trains on the rest.
2. Held-out events the champion may have trained on are dropped too: evaluation starts at
   ``max(cut, champion's train_until_ms + 1)``, so neither model has seen the events it is judged on.
3. A held-out user is every user with at least one event before the evaluation start (their history)
   and at least one item in the evaluation period they had not interacted with before (their targets).
4. Each model folds in each user's history with its own item embeddings, ranks items the user has not
   seen, and is scored with NDCG@10 (binary gains) against the targets; items a model does not know count
   as misses, which is what a shopper would experience.
5. The candidate is promoted when ``candidate_ndcg >= champion_ndcg - tolerance``; with no champion (or a
   champion whose artifact cannot be loaded) it is promoted; with a champion but no held-out user to
   compare on, it is rejected (an operator may still ``streamrec model promote`` it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.metrics import hr_at_k, ndcg_at_k, recall_at_k
from retrain.event_source import subset
from storage.datasets import EventTable

GATE_K = 10


@dataclass(frozen=True)
class HoldoutSplit:
    train: EventTable  # what the candidate is trained on
    cut_ms: int  # first timestamp of the held-out part
    eval_start_ms: int  # first timestamp the models are judged on (>= cut_ms)
    histories: EventTable  # events before eval_start_ms of the evaluated users
    targets: dict[str, set[str]]  # per evaluated user: new items after eval_start_ms

    @property
    def users(self) -> list[str]:
        return sorted(self.targets)


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    candidate_ndcg: float
    champion_ndcg: float | None
    tolerance: float


class NotEnoughData(ValueError):
    """The window is too small to hold anything out and still train."""


def holdout_split(
    table: EventTable, fraction: float, champion_trained_until_ms: int | None = None, max_users: int = 5000
) -> HoldoutSplit:
    n = len(table)
    if n < 2:
        raise NotEnoughData(f"{n} events are too few to hold out {fraction:.0%} and still train")
    ts_sorted = np.sort(table.ts_ms)
    cut_ms = int(ts_sorted[min(n - 1, max(1, math.floor(n * (1.0 - fraction))))])
    if cut_ms <= int(ts_sorted[0]):
        raise NotEnoughData("all events share one timestamp; nothing can be held out by time")
    train = subset(table, table.ts_ms < cut_ms)
    eval_start = cut_ms
    if champion_trained_until_ms is not None:
        eval_start = max(eval_start, int(champion_trained_until_ms) + 1)

    before = table.ts_ms < eval_start
    seen: dict[str, set[str]] = {}
    for user, item in zip(table.user_id[before], table.item_id[before], strict=True):
        seen.setdefault(str(user), set()).add(str(item))
    targets: dict[str, set[str]] = {}
    for user, item in zip(table.user_id[~before], table.item_id[~before], strict=True):
        u, i = str(user), str(item)
        if u in seen and i not in seen[u]:
            targets.setdefault(u, set()).add(i)
    if len(targets) > max_users:
        # A deterministic sample keeps the gate fast on big windows and reproducible between runs.
        keep = sorted(targets, key=lambda u: (hash_user(u), u))[:max_users]
        targets = {u: targets[u] for u in keep}
    hist = subset(table, before & np.isin(table.user_id, np.array(sorted(targets), dtype=str)))
    return HoldoutSplit(train=train, cut_ms=cut_ms, eval_start_ms=eval_start, histories=hist, targets=targets)


def hash_user(user: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(user.encode("utf-8"), digest_size=8).digest(), "big")


def ranking_metrics(
    recs: dict[str, list[str]], targets: dict[str, set[str]], k: int = GATE_K
) -> dict[str, float]:
    """Mean NDCG/Recall/HR@k over every user in ``targets`` (a user with no recommendations scores 0)."""
    users = sorted(targets)
    if not users:
        return {f"ndcg@{k}": 0.0, f"recall@{k}": 0.0, f"hr@{k}": 0.0, "users": 0.0}
    hits = np.zeros((len(users), k), dtype=bool)
    for row, user in enumerate(users):
        ranked = recs.get(user, [])[:k]
        hits[row, : len(ranked)] = [item in targets[user] for item in ranked]
    n_test = np.array([len(targets[u]) for u in users], dtype=np.float64)
    return {
        f"ndcg@{k}": float(ndcg_at_k(hits, n_test, k).mean()),
        f"recall@{k}": float(recall_at_k(hits, n_test, k).mean()),
        f"hr@{k}": float(hr_at_k(hits, k).mean()),
        "users": float(len(users)),
    }


def decide(
    candidate_ndcg: float,
    champion_ndcg: float | None,
    tolerance: float,
    *,
    champion_version: int | None = None,
    eval_users: int = 1,
    champion_note: str | None = None,
) -> GateDecision:
    """Promote or reject; ``champion_ndcg`` is None when there is no usable champion."""
    if not math.isfinite(candidate_ndcg):
        return GateDecision(
            False, "candidate NDCG@10 is not a finite number", candidate_ndcg, champion_ndcg, tolerance
        )
    if champion_version is None or champion_ndcg is None:
        why = champion_note or "no champion yet"
        return GateDecision(
            True, f"{why}; promoted with NDCG@10={candidate_ndcg:.4f}", candidate_ndcg, None, tolerance
        )
    if eval_users == 0:
        return GateDecision(
            False,
            f"no held-out user to compare with champion v{champion_version} on; kept for manual review",
            candidate_ndcg,
            champion_ndcg,
            tolerance,
        )
    figures = (
        f"NDCG@10 {candidate_ndcg:.4f} vs champion v{champion_version} {champion_ndcg:.4f} "
        f"(tolerance {tolerance})"
    )
    if candidate_ndcg >= champion_ndcg - tolerance:
        return GateDecision(True, f"passed the gate: {figures}", candidate_ndcg, champion_ndcg, tolerance)
    return GateDecision(
        False, f"worse than the champion: {figures}", candidate_ndcg, champion_ndcg, tolerance
    )
