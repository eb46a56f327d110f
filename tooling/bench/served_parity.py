"""Parity check: the quality benchmark's streamrec scorer vs ``model.pipeline.fit_model`` (the path
``streamrec retrain`` trains through) on the same split and settings, plus the ranking through the index
retrain builds and through a forced approximate index of the product's default kind (the
``ndcg@10_ann`` figure).

    python -m tooling.bench.served_parity benchmarks/served_path_parity.json

The production path is fed each user's events of their training pairs up to their training cutoff (what
the protocol's input matrix counts), every event as a positive (``value`` 1: the protocol ignores rating
values), with ``history_order="first"`` and the benchmark's input mode as ``input_weighting``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.event_table import EventTable
from core.settings import ModelSettings
from model.lae import TrainConfig, spectrum
from model.metrics import summarize
from model.pipeline import FittedModel, fit_model
from tooling.bench.quality import lae_scores
from tooling.offline.datasets import load_dataset
from tooling.offline.evaluation import evaluate
from tooling.offline.input_weights import event_strengths, input_matrix, pair_strengths
from tooling.offline.split import Split, temporal_split

CASES = (("ml-latest-small", "binary"), ("taobao", "log"))
K = 50


def training_events(table: EventTable, split: Split) -> EventTable:
    """Each user's events of their training pairs up to their training cutoff, every one a positive."""
    users, items = table.user_id.astype(str), table.item_id.astype(str)
    rows = np.searchsorted(split.user_ids, users)
    cols = np.searchsorted(split.item_ids, items)
    ok = (rows < split.n_users) & (cols < split.n_items)
    ok[ok] &= (split.user_ids[rows[ok]] == users[ok]) & (split.item_ids[cols[ok]] == items[ok])
    keep = np.zeros(len(table), dtype=bool)
    keep[ok] = np.asarray(split.train[rows[ok], cols[ok]]).ravel() > 0
    cutoff = np.asarray(split.train_ts.max(axis=1).todense()).ravel()
    keep[keep] &= table.ts_ms[keep] <= cutoff[rows[keep]]
    n = int(keep.sum())
    return EventTable(
        table.user_id[keep], table.item_id[keep], table.event_type[keep], np.ones(n), table.ts_ms[keep]
    )


def _through_index(fitted: FittedModel, split: Split, rows: np.ndarray) -> float:
    pos = {item: j for j, item in enumerate(split.item_ids.tolist())}
    recs = fitted.recommend(rows, K, exclude_seen=True)
    top = np.array([[pos[i] for i, _ in r] + [-1] * (K - len(r)) for r in recs])
    return float(summarize(top, split.test[rows])["ndcg@10"])


def compare(name: str, mode: str) -> dict[str, Any]:
    table = load_dataset(name)
    split = temporal_split(table.user_id, table.item_id, table.ts_ms)
    cfg = TrainConfig(seed=42)
    started = time.perf_counter()
    strength = None
    if mode != "binary":
        strength = pair_strengths(
            split, table.user_id, table.item_id, table.ts_ms, event_strengths(table.event_type)
        )
    inputs = input_matrix(split, strength, mode)
    torch.manual_seed(cfg.seed)
    sv = spectrum(inputs, cfg.factors, torch.device("cpu"))
    bench, _ = evaluate(lae_scores(split, inputs, split.recency_ranks(), cfg, sv), split.train, split.test)
    bench_s = time.perf_counter() - started

    settings = ModelSettings(
        input_weighting=mode,  # type: ignore[arg-type]
        history_order="first",
        factors=cfg.factors,
        reg=cfg.reg,
        recency_boost=cfg.recency_boost,
        recency_half_life=cfg.recency_half_life,
        seed=cfg.seed,
    )
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    fitted = fit_model(training_events(table, split), settings)
    fit_s = time.perf_counter() - started
    if not (
        np.array_equal(fitted.interactions.user_ids, split.user_ids)
        and np.array_equal(fitted.interactions.item_ids, split.item_ids)
    ):
        raise RuntimeError("the production path's id maps differ from the split's")
    exact, _ = evaluate(fitted.scores, split.train, split.test)
    rows = np.flatnonzero(np.diff(split.test.indptr) > 0)
    forced = fitted.reindexed(settings, exact_max_items=0)
    ann = _through_index(forced, split, rows)
    return {
        "dataset": name,
        "input": mode,
        "users": len(rows),
        "items": int(split.n_items),
        "input_matrix_max_abs_diff": float(abs(fitted.interactions.matrix - inputs).max()),
        "bench_scorer_ndcg@10": round(bench["ndcg@10"], 4),
        "fit_model_exact_ndcg@10": round(exact["ndcg@10"], 4),
        "served_index": fitted.model.index_kind,
        "served_ndcg@10": round(_through_index(fitted, split, rows), 4),
        "ann_forced_index": forced.model.index_kind,
        "ann_forced_ndcg@10": round(ann, 4),
        "ann_search_effort": forced.model.search_effort,
        "ann_over_exact": round(ann / max(exact["ndcg@10"], 1e-12), 4),
        "bench_fit_s": round(bench_s, 1),
        "fit_model_s": round(fit_s, 1),
    }


def main(out: Path) -> None:
    torch.set_num_threads(2)
    revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    report: dict[str, Any] = {"command": "python -m tooling.bench.served_parity " + str(out), "git": revision}
    report["rows"] = []
    for name, mode in CASES:
        row = compare(name, mode)
        print(row, flush=True)
        report["rows"].append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/served_path_parity.json"))
