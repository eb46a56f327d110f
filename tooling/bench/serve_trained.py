"""The serving benchmark's model, trained and published as `streamrec retrain` does it.

The storefront simulator (``tooling.producers.simulator``) generates the interactions: shoppers with
category affinities and latent tastes, Zipf item popularity, sessions and the view → click → cart →
purchase funnel. ``retrain.pipeline.run_retrain`` then runs exactly what `streamrec retrain` runs
(read the window, hold out the latest events, fit the LAE with ``ModelSettings`` as configured,
build the serving index for that catalog size, gate, publish and promote) with one difference: the
events come from memory instead of MongoDB, since reading millions of documents from the dev server
measures that server, not serving. It all runs in a child process (``train_and_publish``), so the
memory retrain needs at 1M items is given back before the serving phases start.

``ann_recall_at_20`` asks the published model back from the registry through the read side serving
loads (``TrainedModel.from_files``) and compares its index's top 20 with the exact top 20 (every
item scored) for a sample of users.
"""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import typer

from core.errors import StreamrecError
from tooling.bench.sim_events import CompactEvents, MemoryEventSource
from tooling.producers.simulator import Storefront, StorefrontConfig

# Items per simulated category: a department of a large catalog (the simulator's default of 20
# categories would put 5,000-50,000 items in each at these sizes, and its cost grows with that).
ITEMS_PER_CATEGORY = 500
RECALL_USERS = 1000
RECALL_K = 20


@dataclass
class TrainedServeModel:
    version: int
    outcome: str  # what retrain's gate decided (promoted, not_judged, ...)
    items: int  # items the model knows: those seen in the training window
    users: int
    factors: int
    dim: int
    index: dict[str, Any]  # the artifact config's "ann" (kind, nlist, search effort, calibration recall)
    ann_recall_at_20: float | None  # None when the catalog is small enough for exact search
    recall_users: int
    item_ids: list[str]
    item_popularity: np.ndarray  # interactions per model item, what Redis popularity is seeded with
    user_order: list[str]  # simulated shoppers, most active first (Zipf rank 1 = the first)
    timings: dict[str, float]


def storefront(items: int, users: int, events: int, seed: int) -> Storefront:
    categories = max(20, items // ITEMS_PER_CATEGORY)
    return Storefront(
        StorefrontConfig(users=users, items=items, events=events, seed=seed, categories=categories, days=14)
    )


def recall_at_k(found: Sequence[Sequence[str]], exact: Sequence[Sequence[str]]) -> float:
    """Mean over users of |found ∩ exact| / |exact| (users whose exact list is empty are skipped)."""
    shares = [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True) if e]
    return float(np.mean(shares)) if shares else float("nan")


def exact_top_k(user_vectors: np.ndarray, item_vectors: np.ndarray, k: int, chunk: int = 32) -> np.ndarray:
    """Row indices of each user's k highest inner products over every item, best first (``chunk`` users
    at a time: 32 x 1M items of float32 scores is 128 MB)."""
    out = np.empty((len(user_vectors), min(k, len(item_vectors))), dtype=np.int64)
    for start in range(0, len(user_vectors), chunk):
        scores = user_vectors[start : start + chunk] @ item_vectors.T
        top = np.argpartition(-scores, out.shape[1] - 1, axis=1)[:, : out.shape[1]]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def model_recall(
    model: Any, users: int = RECALL_USERS, k: int = RECALL_K, seed: int = 7
) -> tuple[float, int, list[float]]:
    """(recall@k of the served index vs exact search, users sampled, seconds each index search took)
    through ``TrainedModel``; the searches run one at a time, as serving runs them."""
    user_ids = [str(u) for u in model.artifact.user_ids.tolist()]
    rng = np.random.default_rng(seed)
    sample = [user_ids[i] for i in rng.choice(len(user_ids), min(users, len(user_ids)), replace=False)]
    vectors = np.vstack([model.user_vector(u) for u in sample]).astype(np.float32)
    exact_rows = exact_top_k(vectors, np.asarray(model.artifact.item_embeddings, dtype=np.float32), k)
    exact = [[model.item_ids[r] for r in row] for row in exact_rows.tolist()]
    found: list[list[str]] = []
    took: list[float] = []
    for vec in vectors:
        started = time.perf_counter()
        top = model.recommend(vec, k)
        took.append(time.perf_counter() - started)
        found.append([item for item, _ in top])
    return recall_at_k(found, exact), len(sample), took


def _train_here(settings: Any, items: int, users: int, events: int, seed: int) -> TrainedServeModel:
    """Simulate, retrain, publish and read the model back, in this process."""
    from model.trained_model import TrainedModel
    from retrain.model_adapter import trainer_from_settings
    from retrain.pipeline import RetrainConfig, run_retrain
    from storage.model_registry_mongo import open_model_registry

    timings: dict[str, float] = {}
    started = time.perf_counter()
    shop = storefront(items, users, events, seed)
    docs = CompactEvents.from_rows(shop.interactions())
    timings["simulate_s"] = time.perf_counter() - started
    registry = open_model_registry(settings)
    try:
        started = time.perf_counter()
        result = run_retrain(
            MemoryEventSource(docs),
            registry,
            trainer_from_settings(settings.model),
            RetrainConfig.from_settings(settings.retrain),
            now=datetime.now(UTC),
        )
        timings["retrain_s"] = time.perf_counter() - started
        timings["retrain_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if result.version is None:
            raise StreamrecError(f"retrain published nothing ({result.outcome}: {result.error})")
        if result.outcome != "promoted":
            # The first model of a scratch registry has no champion to beat; whatever the gate
            # said, the benchmark serves it, as an operator's promote would.
            registry.promote(result.version, "serving benchmark")
        started = time.perf_counter()
        model = TrainedModel.from_files(registry.load_files(result.version))
        timings["load_s"] = time.perf_counter() - started
    finally:
        registry.close()
    ann = dict(model.config.get("ann", {}))
    measured, sampled, took = model_recall(model)
    # Exact search has no recall to report (it is 1 by construction); its searches are still timed.
    exact = model.index_kind == "exact"
    recall, recall_users = (None, 0) if exact else (measured, sampled)
    # The index search alone (k=20, one query at a time): what no serving path can avoid per uncached
    # request; bench serve sets it against /healthz's time per request.
    timings["search_us_mean"] = round(float(np.mean(took)) * 1e6, 1)
    timings["search_us_p50"] = round(float(np.median(took)) * 1e6, 1)
    timings["search_us_p99"] = round(float(np.percentile(took, 99)) * 1e6, 1)
    counts = docs.item_counts()
    timings["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    order = np.argsort(-shop.user_activity, kind="stable")
    return TrainedServeModel(
        version=result.version,
        outcome=result.outcome,
        items=model.n_items,
        users=len(model.artifact.user_ids),
        factors=int(model.config.get("factors", model.dim - 1)),
        dim=model.dim,
        index={"kind": model.index_kind, "search_effort": model.search_effort, **ann},
        ann_recall_at_20=recall,
        recall_users=recall_users,
        item_ids=list(model.item_ids),
        item_popularity=np.array([counts.get(i, 0) for i in model.item_ids], dtype=np.float32),
        user_order=[shop.user_ids[i] for i in order.tolist()],
        timings=timings,
    )


# What the child writes beside result.json: the lists the serving phases seed Redis and draw users from.
_LISTS = ("item_ids", "item_popularity", "user_order")


def _save(model: TrainedServeModel, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in _LISTS:
        values = getattr(model, name)
        arr = np.asarray(values) if name == "item_popularity" else np.array(values, dtype=str)
        np.save(out / f"{name}.npy", arr, allow_pickle=False)
    meta = {k: v for k, v in dataclasses.asdict(model).items() if k not in _LISTS}
    (out / "result.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_SERIALIZE_NUMPY))


def _load(out: Path) -> TrainedServeModel:
    meta = orjson.loads((out / "result.json").read_bytes())
    lists = {name: np.load(out / f"{name}.npy", allow_pickle=False) for name in _LISTS}
    return TrainedServeModel(
        **meta,
        item_ids=lists["item_ids"].tolist(),
        item_popularity=lists["item_popularity"],
        user_order=lists["user_order"].tolist(),
    )


def train_and_publish(settings: Any, items: int, users: int, events: int, seed: int = 1) -> TrainedServeModel:
    """Simulate ``events`` interactions, run retrain on them and publish, in a child process: at 1M
    items retrain holds several GiB that the serving phases after it need back (the child's peak RSS is
    ``timings["peak_rss_mb"]``)."""
    from tooling.devstack.processes import REPO_ROOT, child_env

    with tempfile.TemporaryDirectory(prefix="streamrec-serve-model-") as tmp:
        out, log_path = Path(tmp), Path(tmp) / "child.log"
        args = ["--items", items, "--users", users, "--events", events, "--seed", seed, "--out", out]
        with open(log_path, "wb") as log:
            code = subprocess.run(
                [sys.executable, "-m", "tooling.bench.serve_trained", *map(str, args)],
                cwd=REPO_ROOT,
                env=child_env(settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            ).returncode
        if code != 0 or not (out / "result.json").is_file():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
            raise StreamrecError(f"training the serving model failed (exit {code}):\n{tail}")
        return _load(out)


def main(
    items: int = typer.Option(..., "--items"),
    users: int = typer.Option(..., "--users"),
    events: int = typer.Option(..., "--events"),
    seed: int = typer.Option(1, "--seed"),
    out: Path = typer.Option(..., "--out"),
) -> None:
    """The child of ``train_and_publish``: its settings come from the STREAMREC_* environment."""
    from cli.context import load_settings
    from tooling.settings import ToolingSettings

    _save(_train_here(load_settings(ToolingSettings), items, users, events, seed), out)


if __name__ == "__main__":
    typer.run(main)
