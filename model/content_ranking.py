"""Refining the cold-start content map on the ranking it is used for.

The ridge map (``model.content``) fits catalog features to the trained items' embeddings by squared
error, every coordinate alike, whether or not it moves a shopper's ranking. A new item is then
scored by a shopper's vector against its mapped embedding, so here the map is refined on that score
itself: for each training pair (shopper, item), a softmax over the warm items of the shopper's
scores, with every item's embedding given by the map from its features and the shoppers' vectors
held fixed. It starts from the ridge map, so a refinement that runs no step returns it unchanged.

Above ``negatives`` warm items a step's softmax runs over the batch's own items plus a uniform sample
of the rest (a uniform sample shifts every sampled logit alike, so no correction is needed), which
bounds a step's cost whatever the catalog's size; ``max_steps`` bounds the whole refinement.

Measured on the cold-start benchmark's validation splits (BENCHMARKS.md, "Cold start from catalog
content"): cold NDCG@20 0.084 → ~0.10 on amazon-magazine and 0.250 → ~0.30 on ml-latest-small at
the defaults below, the two sets with text metadata, where LightFM's ranking-trained item features
had been ahead of the ridge map. On Taobao, whose only metadata is a category id, it did worse than
the ridge map at every holdout shift. ``choose_content_fit`` therefore decides per catalog, on held-out
warm items, which of the two maps ranks better (``ModelSettings.content_fit = "auto"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch

from model.content import fit_content_map

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankingFit:
    epochs: int = 8
    lr: float = 1e-3
    batch_size: int = 1024
    negatives: int = 8192  # above this many warm items, the sampled softmax's sample size
    max_steps: int = 1000
    seed: int = 0


def _torch_sparse(m: sp.csr_matrix) -> torch.Tensor:
    coo = m.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(indices, values, coo.shape, check_invariants=False).coalesce()


def refine_content_map(
    features: sp.csr_matrix,
    init_map: np.ndarray,
    users: np.ndarray,
    pairs: sp.csr_matrix,
    fit: RankingFit | None = None,
) -> np.ndarray:
    """The map from ``features`` (warm items x features) to item embeddings, refined from
    ``init_map`` (features x dim) on the softmax ranking of each positive of ``pairs`` (users x warm
    items) by ``users`` (users x dim, fixed); (features x dim) float32."""
    fit = fit or RankingFit()
    n_items, n_features = features.shape
    if init_map.shape[0] != n_features:
        raise ValueError(f"the map has {init_map.shape[0]} rows for {n_features} features")
    if pairs.shape != (users.shape[0], n_items) or users.shape[1] != init_map.shape[1]:
        raise ValueError(
            f"pairs {pairs.shape}, users {users.shape} and map {init_map.shape} do not fit {n_items} items"
        )
    coo = sp.coo_matrix(pairs)
    rows, cols = coo.row.astype(np.int64), coo.col.astype(np.int64)
    if len(rows) == 0 or fit.epochs <= 0 or fit.max_steps <= 0:
        return np.asarray(init_map, dtype=np.float32)
    rng = np.random.default_rng(fit.seed)
    torch.manual_seed(fit.seed)
    x = sp.csr_matrix(features, dtype=np.float32)
    all_items = _torch_sparse(x) if n_items <= fit.negatives else None
    user_vecs = torch.from_numpy(np.ascontiguousarray(users, dtype=np.float32))
    weights = torch.nn.Parameter(torch.from_numpy(np.array(init_map, dtype=np.float32)))
    opt = torch.optim.Adam([weights], lr=fit.lr)
    steps, loss_sum = 0, 0.0
    for _epoch in range(fit.epochs):
        order = rng.permutation(len(rows))
        for start in range(0, len(rows), fit.batch_size):
            batch = order[start : start + fit.batch_size]
            pos = cols[batch]
            if all_items is not None:
                item_emb = torch.sparse.mm(all_items, weights)
                target = torch.from_numpy(pos)
            else:
                cand = np.unique(np.concatenate([pos, rng.integers(0, n_items, fit.negatives)]))
                item_emb = torch.sparse.mm(_torch_sparse(x[cand]), weights)
                target = torch.from_numpy(np.searchsorted(cand, pos))
            logits = user_vecs[torch.from_numpy(rows[batch])] @ item_emb.T
            loss = torch.nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            loss_sum += float(loss.detach())
            if steps >= fit.max_steps:
                break
        if steps >= fit.max_steps:
            break
    logger.info(
        "content_map_refined items=%d features=%d pairs=%d steps=%d mean_loss=%.4f",
        n_items,
        n_features,
        len(rows),
        steps,
        loss_sum / steps,
    )
    return np.asarray(weights.detach().numpy(), dtype=np.float32)


def holdout_ndcg(
    users: np.ndarray, pairs: sp.csr_matrix, item_emb: np.ndarray, k: int = 20, chunk: int = 1024
) -> tuple[float, int]:
    """Mean binary NDCG@k, over the users with any pair, of ranking the items of ``item_emb`` (the
    columns of ``pairs``, users x those items) by ``users @ item_emb.T``; and how many users it
    averages. The question a cold item's score answers: which of the new items to show a shopper."""
    pairs = sp.csr_matrix(pairs)
    counts = np.diff(pairs.indptr)
    active = np.flatnonzero(counts)
    n_items = item_emb.shape[0]
    if len(active) == 0 or n_items == 0:
        return 0.0, 0
    top = min(k, n_items)
    discounts = 1.0 / np.log2(np.arange(2, top + 2))
    ideal = np.cumsum(discounts)
    total = 0.0
    for start in range(0, len(active), chunk):
        rows = active[start : start + chunk]
        scores = users[rows] @ item_emb.T
        best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        order = np.take_along_axis(best, np.argsort(-np.take_along_axis(scores, best, 1), axis=1), 1)
        own = [pairs.indices[pairs.indptr[r] : pairs.indptr[r + 1]] for r in rows]
        hits = np.asarray([np.isin(order[i], items) for i, items in enumerate(own)])
        dcg = hits.astype(np.float64) @ discounts
        total += float((dcg / ideal[np.minimum(counts[rows], top) - 1]).sum())
    return total / len(active), len(active)


MIN_SCORE_SCALE = 1e-3


def score_scale(
    users: np.ndarray, content_emb: np.ndarray, trained_emb: np.ndarray, seed: int = 0, sample: int = 2048
) -> float:
    """The factor that puts content scores on the trained items' scale: the least-squares ``a`` in
    ``users @ trained_emb.T ~ a * users @ content_emb.T`` (over a seeded sample of at most ``sample``
    users and items), clipped to [MIN_SCORE_SCALE, 1]. Serving merges a new item into one list with
    trained ones by score; a map whose scores run larger than the trained embeddings' it imitates (the
    ranking refinement's softmax stretches them) would fill the list with new items. The clip never
    raises a new item above its map's own score; a map no better than nothing (a <= 0) gets the floor,
    which keeps the new items' order among themselves (a 0 would tie them all)."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(users))[:sample]
    items = rng.permutation(len(content_emb))[:sample]
    u = np.asarray(users[rows], np.float64)
    truth = u @ np.asarray(trained_emb[items], np.float64).T
    mapped = u @ np.asarray(content_emb[items], np.float64).T
    denom = float((mapped * mapped).sum())
    if not np.isfinite(denom) or denom <= 0.0:
        return 1.0
    return float(np.clip(float((truth * mapped).sum()) / denom, MIN_SCORE_SCALE, 1.0))


def choose_content_fit(
    features: sp.csr_matrix,
    targets: np.ndarray,
    reg: float,
    users: np.ndarray,
    pairs: sp.csr_matrix,
    fit: RankingFit | None = None,
    *,
    history: sp.csr_matrix | None = None,
    input_emb: np.ndarray | None = None,
    holdout: float = 0.2,
    min_users: int = 20,
    k: int = 20,
    kinds: tuple[Literal["ridge", "ranking"], ...] = ("ridge", "ranking"),
) -> tuple[Literal["ridge", "ranking"], dict[str, float]]:
    """Ridge map or its ranking refinement, whichever ranks held-out warm items better for their users.

    A random ``holdout`` share of the items (``features`` rows, ``targets`` their embeddings, ``pairs``
    columns) plays the new items: both maps are fitted on the rest (the ridge at strength ``reg``) and
    each ranks the held-out items by the shoppers' vectors (``holdout_ndcg``). ``users`` are those
    vectors folded in from ``history`` (users x the same items, as weighted for the user tower) through
    ``input_emb``, in their first columns; given both, the held-out items' part is taken out of them,
    so that a shopper is not already pointed at the items being tested (as no shopper is at a new
    item), which otherwise favours the ridge map, the one closer to the trained embeddings. Ties, and
    too few users with a held-out pair to tell (under ``min_users``), keep the ridge map, the cheaper
    one. ``kinds`` limits the maps fitted (one kind: no choice, only its scale). The scores also hold
    each map's ``score_scale`` on the held-out items (``scale_<kind>``; absent: 1). Returns the choice
    and the scores it was made on."""
    fit = fit or RankingFit()
    n = features.shape[0]
    n_val = round(n * holdout)
    if n_val < 2 or n - n_val < 2:
        return kinds[0] if len(kinds) == 1 else "ridge", {}
    order = np.random.default_rng(fit.seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    x = sp.csr_matrix(features)
    pairs = sp.csr_matrix(pairs)
    val_pairs = pairs[:, val]
    if int((np.diff(val_pairs.indptr) > 0).sum()) < min_users:
        return kinds[0] if len(kinds) == 1 else "ridge", {}
    users = np.array(users, dtype=np.float32)
    if history is not None and input_emb is not None:
        held_out = sp.csr_matrix(history)[:, val] @ input_emb[val]
        users[:, : input_emb.shape[1]] -= np.asarray(held_out, np.float32)
    targets = np.asarray(targets)
    maps = {"ridge": fit_content_map(x[train], targets[train], reg)}
    if "ranking" in kinds:
        maps["ranking"] = refine_content_map(x[train], maps["ridge"], users, pairs[:, train], fit)
    x_val = x[val]
    scores: dict[str, float] = {}
    n_users = 0
    for kind in kinds:
        mapped = np.asarray(x_val @ maps[kind], np.float32)
        scores[kind], n_users = holdout_ndcg(users, val_pairs, mapped, k)
        scores[kind] = round(scores[kind], 5)
        scores[f"scale_{kind}"] = round(score_scale(users, mapped, targets[val], seed=fit.seed), 5)
    scores["users"] = float(n_users)
    choice: Literal["ridge", "ranking"] = (
        kinds[0] if len(kinds) == 1 else "ranking" if scores["ranking"] > scores["ridge"] else "ridge"
    )
    logger.info("content_fit_chosen fit=%s scores=%s", choice, scores)
    return choice, scores
