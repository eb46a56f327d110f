"""``streamrec bench train``: streamrec's training time vs implicit's iALS on the same matrix.

Data: a synthetic set (``--interactions``), or the real MovieLens 1M ratings (``--dataset movielens-1m``,
read from ``../shared/data/movielens-1m/ratings_no_timestamps.csv``; each rating weighs what the
product's event-weight rule gives a ``rate`` event: ``model.weights.rate`` x stars).

Settings: streamrec trains with the product's model settings (``model.*``: closed form, ``epochs`` 0 by
default, the default ``reg``) at the factor count given, the same as iALS; iALS runs 15 iterations with
2 threads, the setting the quality benchmark tunes it with.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from core.event_weights import event_weights
from core.settings import EventWeights, Settings
from model.lae import train_lae
from tooling.bench.common import git_revision, machine_info
from tooling.offline.baselines import implicit_available
from tooling.offline.datasets import DEFAULT_DATA_DIR

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


ML_1M = "movielens-1m"
ML_1M_RATINGS = Path(ML_1M) / "ratings_no_timestamps.csv"


def movielens_1m(data_dir: Path, weights: EventWeights) -> sp.csr_matrix | None:
    """The 1,000,209 ML-1M ratings as a users x movies matrix; None when the file is absent."""
    path = data_dir / ML_1M_RATINGS
    if not path.is_file():
        return None
    rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    users, u_idx = np.unique(rows[:, 0], return_inverse=True)
    items, i_idx = np.unique(rows[:, 1], return_inverse=True)
    stars = rows[:, 2].astype(np.float64)
    data = event_weights(np.full(len(rows), "rate"), stars, weights).astype(np.float32)
    return sp.csr_matrix((data, (u_idx.ravel(), i_idx.ravel())), shape=(len(users), len(items)))


def run_train(
    interactions: int,
    json_out: Path | None,
    factors: int = 128,
    dataset: str | None = None,
    data_dir: Path | None = None,
) -> dict[str, Any] | None:
    from retrain.model_adapter import train_config

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    model_settings = Settings().model
    if dataset == ML_1M:
        folder = data_dir or DEFAULT_DATA_DIR
        loaded = movielens_1m(folder, model_settings.weights)
        if loaded is None:
            Console().print(
                f"[yellow]skipped:[/yellow] {folder / ML_1M_RATINGS} not found; pass --data-dir with the"
                " folder holding movielens-1m/"
            )
            return None
        matrix = loaded
    else:
        matrix = synthetic_interactions(interactions)
    logger.info("bench_train users=%d items=%d nnz=%d", matrix.shape[0], matrix.shape[1], matrix.nnz)
    config = dataclasses.replace(train_config(model_settings), factors=factors)
    start = time.perf_counter()
    train_lae(matrix, config)
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
        "command": " ".join(["streamrec", *sys.argv[1:]]),
        "git_revision": git_revision(),
        "dataset": dataset or "synthetic",
        "users": int(matrix.shape[0]),
        "items": int(matrix.shape[1]),
        "interactions": int(matrix.nnz),
        "factors": factors,
        "streamrec_config": {
            "reg": config.reg,
            "epochs": config.epochs,
            "diag_correction": config.diag_correction,
        },
        "ials_config": {"iterations": 15, "regularization": 10.0, "threads": 2},
        "streamrec_fit_s": round(ours, 3),
        "ials_fit_s": None if ials is None else round(ials, 3),
        "ratio": None if ials is None else round(ours / ials, 3),
        "target_ratio": 2.0,
        "machine": machine_info(),
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
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
