"""Segment popularity against global popularity for new shoppers on MovieLens 100k (its u.user gives
each user an age, a gender and an occupation: the shopper attributes a storefront would PUT).

The protocol is retrain's (``model.segment_popularity`` through ``retrain.segments``): the events are
cut by time at ``1 - holdout`` of their count; popularity (global and per attribute value with at
least ``min_users`` training users) is counted on the part before the cut with the default event
weights; users with no event before the cut are the new shoppers, each judged on their first 5
distinct items. Reported per attribute: NDCG@10 of each list, the paired bootstrap interval of the
difference, and retrain's decision.

    python -m tooling.bench.segments --json benchmarks/segments_ml100k.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from core.settings import EventWeights
from model.segment_popularity import decide_segments, new_user_first_items, popularity_lists
from retrain.event_source import subset
from tooling.bench.common import git_revision
from tooling.offline.datasets import DEFAULT_DATA_DIR, load_dataset

ATTRIBUTES = ("age_band", "gender", "occupation")


def ml100k_users(data_dir: Path) -> dict[str, dict[str, str]]:
    """user id -> attributes from u.user (``id|age|gender|occupation|zip``); age as a decade band."""
    out: dict[str, dict[str, str]] = {}
    for line in (data_dir / "movielens-100k" / "u.user").read_text(encoding="latin-1").splitlines():
        uid, age, gender, occupation, _zip = line.split("|")
        decade = int(age) // 10 * 10
        out[uid] = {"age_band": f"{decade}-{decade + 9}", "gender": gender, "occupation": occupation}
    return out


def run(data_dir: Path, holdout: float, min_users: int, min_eval_users: int) -> dict[str, Any]:
    table = load_dataset("ml-100k", data_dir)
    ts = np.sort(table.ts_ms)
    cut_ms = int(ts[min(len(ts) - 1, math.floor(len(ts) * (1.0 - holdout)))])
    train = subset(table, table.ts_ms < cut_ms)
    firsts = new_user_first_items(table, cut_ms)
    users = ml100k_users(data_dir)
    results = []
    for attribute in ATTRIBUTES:
        segments = {u: attrs[attribute] for u, attrs in users.items()}
        global_list, lists = popularity_lists(train, segments, EventWeights(), min_users=min_users)
        seg = decide_segments(attribute, global_list, lists, firsts, segments, min_eval_users=min_eval_users)
        results.append(seg.summary())
    return {
        "dataset": "ml-100k",
        "protocol": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        "holdout_fraction": holdout,
        "min_users": min_users,
        "min_eval_users": min_eval_users,
        "events": len(table),
        "train_events": len(train),
        "new_users": len(firsts),
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--holdout", type=float, default=0.1, help="retrain.holdout_fraction")
    parser.add_argument("--min-users", type=int, default=20, help="model.segment_min_users")
    parser.add_argument("--min-eval-users", type=int, default=50, help="retrain.gate_min_users")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = run(args.data_dir, args.holdout, args.min_users, args.min_eval_users)
    report["command"] = "python -m tooling.bench.segments " + " ".join(sys.argv[1:])
    report["git_revision"] = git_revision()
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
