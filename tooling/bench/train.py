"""``streamrec bench train``: streamrec's training time vs implicit's iALS on a synthetic data set.

Settings: streamrec trains with the closed-form fit the quality benchmark selects (``epochs=0``: no
fine-tuning; the default ``reg``) at the same factor count as iALS; iALS runs 15 iterations with 2 threads,
the setting the quality benchmark tunes it with.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from model.lae import TrainConfig, train_lae
from tooling.offline.baselines import implicit_available

logger = logging.getLogger(__name__)


def synthetic_interactions(
    interactions: int, n_users: int = 50_000, n_items: int = 20_000, rank: int = 16, seed: int = 7
) -> sp.csr_matrix:
    """Users and items with latent tastes; each user samples items by softmax affinity plus popularity."""
    rng = np.random.default_rng(seed)
    n_users = max(10, min(n_users, interactions // 5))
    n_items = max(10, min(n_items, interactions // 10))
    users = rng.normal(size=(n_users, rank)).astype(np.float32)
    items = rng.normal(size=(n_items, rank)).astype(np.float32)
    popularity = rng.zipf(1.5, n_items).clip(max=1000).astype(np.float32)
    per_user = rng.multinomial(interactions, np.full(n_users, 1.0 / n_users))
    rows, cols = [], []
    log_pop = np.log(popularity)
    for start in range(0, n_users, 2048):
        block = slice(start, min(start + 2048, n_users))
        logits = users[block] @ items.T / np.sqrt(rank) * 2.0 + log_pop
        gumbel = -np.log(-np.log(rng.random(logits.shape, dtype=np.float32) + 1e-12) + 1e-12)
        order = np.argsort(-(logits + gumbel), axis=1)
        for offset, user in enumerate(range(block.start, block.stop)):
            n = int(min(per_user[user], n_items))
            rows.append(np.full(n, user))
            cols.append(order[offset, :n])
    r, c = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_users, n_items))


def run_train(interactions: int, json_out: Path | None, factors: int = 128) -> dict[str, Any]:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    matrix = synthetic_interactions(interactions)
    logger.info("bench_train users=%d items=%d nnz=%d", matrix.shape[0], matrix.shape[1], matrix.nnz)
    start = time.perf_counter()
    train_lae(matrix, TrainConfig(factors=factors, epochs=0))
    ours = time.perf_counter() - start
    ials: float | None = None
    if implicit_available():
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=factors,
            regularization=10.0,
            iterations=15,
            num_threads=2,
            random_state=42,
            calculate_training_loss=False,
        )
        start = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(matrix, show_progress=False)
        ials = time.perf_counter() - start
    report: dict[str, Any] = {
        "interactions": int(matrix.nnz),
        "factors": factors,
        "streamrec_fit_s": round(ours, 3),
        "ials_fit_s": None if ials is None else round(ials, 3),
        "ratio": None if ials is None else round(ours / ials, 3),
    }
    table = Table(title=f"training time: {matrix.nnz:,} interactions, {factors} factors")
    for col in ("streamrec_fit_s", "ials_fit_s", "ratio"):
        table.add_column(col, justify="right")
    table.add_row(*(str(report[c]) for c in ("streamrec_fit_s", "ials_fit_s", "ratio")))
    Console().print(table)
    if ials is None:
        Console().print("[yellow]note:[/yellow] implicit is not installed: no iALS timing")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    return report
