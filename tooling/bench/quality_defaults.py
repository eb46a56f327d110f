"""How streamrec's modelling defaults were chosen: a small grid scored on validation folds only.

Each configuration is trained by ``fit_model`` (``tooling.bench.quality_rows.fit_streamrec``, the
quality benchmark's streamrec row) on the validation folds ``bench quality`` tunes on (the split made
inside training, and again inside that) of the five shared data sets; no test set is scored. For each
configuration the report gives its mean validation NDCG@10 per set, its share of the best configuration's
score on each set, and the mean and worst of those shares; the default is the configuration with the
best mean share (ties broken by the worst share). A data set whose folder is missing is skipped.

    python -m tooling.bench.quality_defaults --json benchmarks/quality/defaults_grid.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tooling.bench.common import git_revision
from tooling.bench.quality import prepare
from tooling.bench.quality_rows import fit_streamrec
from tooling.offline.datasets import DEFAULT_DATA_DIR, DatasetError
from tooling.offline.evaluation import evaluate
from tooling.offline.served import settings_for

logger = logging.getLogger(__name__)

# (dataset, --min-item-users): the five sets of the quality targets.
SETS: tuple[tuple[str, int], ...] = (
    ("amazon-magazine", 1),
    ("taobao", 3),
    ("ml-100k", 1),
    ("ml-latest-small", 1),
    ("taobao", 1),
)
# The structure stays at the product's (512 factors clamped to each fold's rank, diagonal correction,
# latest history order); the grid covers what differs between stores' data: input weighting, ridge
# strength and the recency boost's shape.
WEIGHTINGS = ("linear", "binary", "log")
REGS = (100.0, 300.0, 1000.0)
RECENCY = ((1.0, 30.0), (3.0, 10.0), (6.0, 4.0), (10.0, 10.0))


def grid() -> dict[str, dict[str, Any]]:
    out = {}
    for weighting, reg, (boost, half_life) in itertools.product(WEIGHTINGS, REGS, RECENCY):
        label = f"{weighting}/reg{reg:g}/boost{boost:g}/half-life{half_life:g}"
        out[label] = {
            "input_weighting": weighting,
            "reg": reg,
            "recency_boost": boost,
            "recency_half_life": half_life,
            "pop_weight": 0.0,
        }
    return out


def structure() -> dict[str, Any]:
    default = settings_for({}).model_dump()
    return {k: default[k] for k in ("factors", "diag_correction", "history_order")}


def score_sets(data_dir: Path, configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    fixed = structure()
    scores: dict[str, dict[str, float]] = {}
    for dataset, min_users in SETS:
        name = dataset if min_users == 1 else f"{dataset}_min{min_users}"
        try:
            prepared = prepare(dataset, data_dir, None, min_users)
        except DatasetError as exc:
            logger.warning("skipped %s: %s", name, exc)
            continue
        started = time.perf_counter()
        scores[name] = {}
        for label, params in configs.items():
            vals = [
                evaluate(fit_streamrec({**fixed, **params}, fold), fold.split.train, fold.split.test)[0][
                    "ndcg@10"
                ]
                for fold in prepared.folds
            ]
            scores[name][label] = round(float(np.mean(vals)), 5)
        logger.info("scored %s configs=%d s=%.1f", name, len(configs), time.perf_counter() - started)
    return scores


def rank_configs(scores: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per configuration its share of each set's best validation score; best mean share first."""
    best = {name: max(per.values()) for name, per in scores.items()}
    labels = next(iter(scores.values())).keys() if scores else []
    rows = []
    for label in labels:
        shares = {name: scores[name][label] / best[name] if best[name] > 0 else 0.0 for name in scores}
        rows.append(
            {
                "config": label,
                "mean_share": round(float(np.mean(list(shares.values()))), 4),
                "worst_share": round(min(shares.values()), 4),
                "val_ndcg@10": {name: scores[name][label] for name in scores},
            }
        )
    return sorted(rows, key=lambda r: (-r["mean_share"], -r["worst_share"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.data_dir.is_dir():
        print(f"data folder {args.data_dir} not found: pass --data-dir", file=sys.stderr)
        return 2
    revision = git_revision()
    started = time.perf_counter()
    configs = grid()
    ranked = rank_configs(score_sets(args.data_dir, configs))
    report = {
        "command": "python -m tooling.bench.quality_defaults "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_revision": revision,
        "protocol": "mean validation NDCG@10 over bench quality's validation folds; no test set scored",
        "structure": structure(),
        "chosen": ranked[0]["config"] if ranked else None,
        "configs": {label: configs[label] for label in configs},
        "ranking": ranked,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    for row in ranked[:5]:
        print(f"{row['mean_share']:.3f} {row['worst_share']:.3f} {row['config']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
