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
5. Evidence first: with fewer than ``min_users`` evaluated users or ``min_events`` held-out events, the
   figures mean nothing (two users scoring 0.0 each "pass" any comparison), so the candidate is *not
   judged*: it is published with status ``not_judged`` and the champion is kept. With no usable champion
   at all (none yet, or one whose artifact cannot be loaded) the candidate still becomes champion, since
   serving something beats serving nothing, but its record says it was not judged.
6. Otherwise the candidate is promoted when ``candidate_ndcg >= champion_ndcg - tolerance`` (always, when
   there is no usable champion) and rejected when worse; an operator may still ``streamrec model
   promote`` a rejected or unjudged version.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.event_table import EventTable
from core.event_weights import event_weight
from core.settings import EventWeights
from model.metrics import hr_at_k, ndcg_at_k, recall_at_k
from retrain.event_source import subset

GATE_K = 10


@dataclass(frozen=True)
class HoldoutSplit:
    train: EventTable  # what the candidate is trained on
    cut_ms: int  # first timestamp of the held-out part
    eval_start_ms: int  # first timestamp the models are judged on (>= cut_ms)
    histories: EventTable  # events before eval_start_ms of the evaluated users
    targets: dict[str, set[str]]  # per evaluated user: new items after eval_start_ms
    eval_events: int = 0  # events from eval_start_ms on by the evaluated users: the gate's evidence

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
    # False when the evaluation had too few users or events to mean anything (see the module docstring).
    judged: bool = True

    @property
    def outcome(self) -> str:
        """promoted, rejected or not_judged (a candidate kept beside the champion without a verdict)."""
        if self.promote:
            return "promoted"
        return "rejected" if self.judged else "not_judged"


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
    evaluated = np.isin(table.user_id, np.array(sorted(targets), dtype=str))
    hist = subset(table, before & evaluated)
    return HoldoutSplit(
        train=train,
        cut_ms=cut_ms,
        eval_start_ms=eval_start,
        histories=hist,
        targets=targets,
        eval_events=int(np.count_nonzero(~before & evaluated)),
    )


def hash_user(user: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.blake2b(user.encode("utf-8"), digest_size=8).digest(), "big")


class RanksHistories(Protocol):
    """What the gate needs from a model: ``model.trained_model.TrainedModel.recommend_batch``."""

    def recommend_batch(
        self, queries: Sequence[Sequence[tuple[str, float]]], k: int, exclude: Sequence[Collection[str]]
    ) -> list[list[tuple[str, float]]]: ...


def user_histories(
    table: EventTable, users: Sequence[str], weights: EventWeights
) -> list[list[tuple[str, float]]]:
    """Per user in ``users``, their (item, event weight) pairs in ``table`` oldest first (ties keep the
    table's order); a user without events gets an empty history."""
    wanted = set(users)
    order = np.lexsort((table.ts_ms, table.user_id))
    per_user: dict[str, list[tuple[str, float]]] = {}
    for pos in order.tolist():
        user = str(table.user_id[pos])
        if user not in wanted:
            continue
        value = float(table.value[pos])
        w = event_weight(str(table.event_type[pos]), None if np.isnan(value) else value, weights)
        per_user.setdefault(user, []).append((str(table.item_id[pos]), w))
    return [per_user.get(u, []) for u in users]


def gate_rankings(
    model: RanksHistories, histories: EventTable, users: Sequence[str], k: int, weights: EventWeights
) -> dict[str, list[str]]:
    """Top-k items per user that the user has not interacted with, each user's events in ``histories``
    folded in with the per-type event ``weights``. Items the model does not know are left out before its
    recency boost is counted, exactly as serving folds in a live session."""
    queries = user_histories(histories, users, weights)
    seen = [{item for item, _ in history} for history in queries]
    ranked = model.recommend_batch(queries, k, exclude=seen)
    return {user: [item for item, _ in row] for user, row in zip(users, ranked, strict=True)}


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
    eval_events: int | None = None,
    min_users: int = 1,
    min_events: int = 0,
    champion_note: str | None = None,
) -> GateDecision:
    """Promote, reject or leave unjudged; ``champion_ndcg`` is None when there is no usable champion.

    ``eval_events`` None means "not counted" and only ``min_users`` applies.
    """
    if not math.isfinite(candidate_ndcg):
        return GateDecision(
            False, "candidate NDCG@10 is not a finite number", candidate_ndcg, champion_ndcg, tolerance
        )
    no_champion = champion_version is None or champion_ndcg is None
    evidence = f"{eval_users} held-out users, " + (
        "events not counted" if eval_events is None else f"{eval_events} held-out events"
    )
    short = eval_users < max(1, min_users) or (eval_events is not None and eval_events < min_events)
    if short:
        if eval_users == 0:
            why = f"not judged: no held-out user to compare on (need {min_users} users, {min_events} events)"
        else:
            why = f"not judged: {evidence}, below the minimum of {min_users} users and {min_events} events"
        if no_champion:
            prefix = champion_note or "no champion yet"
            return GateDecision(
                True,
                f"{why}; promoted anyway because there is no usable champion ({prefix}); "
                f"NDCG@10={candidate_ndcg:.4f}",
                candidate_ndcg,
                None,
                tolerance,
                judged=False,
            )
        return GateDecision(
            False,
            f"{why}; champion v{champion_version} kept, this version is left for manual review",
            candidate_ndcg,
            champion_ndcg,
            tolerance,
            judged=False,
        )
    if no_champion or champion_ndcg is None:
        why = champion_note or "no champion yet"
        return GateDecision(
            True,
            f"{why}; promoted with NDCG@10={candidate_ndcg:.4f} on {evidence}",
            candidate_ndcg,
            None,
            tolerance,
        )
    figures = (
        f"NDCG@10 {candidate_ndcg:.4f} vs champion v{champion_version} {champion_ndcg:.4f} "
        f"(tolerance {tolerance}; {evidence})"
    )
    if candidate_ndcg >= champion_ndcg - tolerance:
        return GateDecision(True, f"passed the gate: {figures}", candidate_ndcg, champion_ndcg, tolerance)
    return GateDecision(
        False, f"worse than the champion: {figures}", candidate_ndcg, champion_ndcg, tolerance
    )
