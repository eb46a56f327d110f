"""What `streamrec retrain --tune` buys: on a shared data set's events, the gate's protocol scores the
default settings and the tuned ones on the gate's own held-out events (which tuning never sees).

    python -m tooling.bench.tune_check OUT.json [--trials N] [--budget-s S] [--dataset D ...]

The gate's temporal holdout needs users active in the last 10% of the events: MovieLens users rate in
bursts (ml-latest-small leaves 20 validation users), so the default data set is taobao.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from core.settings import ModelSettings
from retrain.gate import holdout_split
from retrain.pipeline import RetrainConfig
from retrain.tuning import tune_settings, tuning_split, validation_score
from tooling.offline.datasets import load_dataset


def check(dataset: str, trials: int, budget_s: float) -> dict[str, Any]:
    table = load_dataset(dataset)
    config = RetrainConfig(window_days=None, holdout_fraction=0.1, gate_tolerance=0.0)
    gate = holdout_split(table, config.holdout_fraction, None, config.gate_max_users)
    split = tuning_split(table, config)
    started = time.perf_counter()
    result = tune_settings(split, ModelSettings(), budget_s=budget_s, trials=trials)
    tune_s = time.perf_counter() - started
    tuned = ModelSettings.model_validate({**ModelSettings().model_dump(), **result.params})
    default_gate = validation_score(gate, ModelSettings())
    tuned_gate = validation_score(gate, tuned)
    return {
        "dataset": dataset,
        "events": len(table),
        "gate_users": len(gate.targets),
        "validation_users": result.validation["users"],
        "trials": result.trials,
        "tune_s": round(tune_s, 1),
        "validation_ndcg@10_default": round(result.baseline_score or 0.0, 4),
        "validation_ndcg@10_tuned": round(result.score, 4),
        "gate_ndcg@10_default": round(default_gate, 4),
        "gate_ndcg@10_tuned": round(tuned_gate, 4),
        "params": result.params,
        "at_edge": result.validation["at_edge"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--budget-s", type=float, default=300.0)
    parser.add_argument("--dataset", action="append", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = (
        f"python -m tooling.bench.tune_check {args.out} --trials {args.trials} --budget-s {args.budget_s}"
    )
    report: dict[str, Any] = {"command": command, "git": revision, "rows": []}
    for dataset in args.dataset or ["taobao"]:
        row = check(dataset, args.trials, args.budget_s)
        print(row, flush=True)
        report["rows"].append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
