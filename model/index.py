"""FAISS inner-product search over item embeddings: exact up to a catalog size, approximate above it.

The approximate index is an HNSW-Flat graph by default (IVF-Flat on request). Its search effort
(IVF ``nprobe``, HNSW ``efSearch``) is not a fixed setting: ``build_index`` measures recall@k
against exact search on calibration queries and keeps the smallest effort that reaches
``target_recall``. FAISS serializes both ``nprobe`` and ``efSearch`` with the index; the artifact
config records them as well so loaders can re-apply them and reports can show what was chosen.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from model.ann_recall import (
    ExactTopK,
    calibrate,
    exact_search,
    index_recall,
    search_depth,
    served_lists,
)

logger = logging.getLogger(__name__)

EXACT, IVF, HNSW = "exact", "ivf", "hnsw"
APPROXIMATE_KINDS = (IVF, HNSW)
# Recall is calibrated on the top 50 a shopper is shown: deeper than a page of 10, and (when retrain
# passes the calibration users' items) after serving's exclusions, which reach far deeper on heavy users.
CALIBRATION_K = 50
CALIBRATION_QUERIES = 1000
# FAISS k-means warns below 39 points per centroid; 64 gives stable centroids. The cap keeps a 1M
# catalog's k-means (4k centroids) near half a minute on two slow cores.
MIN_POINTS_PER_CENTROID = 39
TRAIN_POINTS_PER_CENTROID = 64
MAX_TRAIN_POINTS = 200_000
MAX_NLIST = 65_536


@dataclass(frozen=True)
class AnnParams:
    """How to build the approximate index; ``hnsw_ef_search`` caps HNSW's calibrated efSearch."""

    kind: str = HNSW
    target_recall: float = 0.95
    k: int = CALIBRATION_K
    ivf_nlist: int = 0  # 0: about 4 * sqrt(items)
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in APPROXIMATE_KINDS:
            raise ValueError(f"ANN index kind must be one of {APPROXIMATE_KINDS}, got {self.kind!r}")
        if not 0.0 < self.target_recall <= 1.0:
            raise ValueError(f"target_recall must be in (0, 1], got {self.target_recall}")

    @classmethod
    def from_settings(cls, settings: Any) -> AnnParams:
        """From a ``core.settings.ModelSettings`` (duck-typed: model/ does not import core/)."""
        return cls(
            kind=settings.ann_index,
            target_recall=float(settings.ann_target_recall),
            ivf_nlist=int(settings.ivf_nlist),
            hnsw_m=int(settings.hnsw_m),
            hnsw_ef_construction=int(settings.hnsw_ef_construction),
            hnsw_ef_search=int(settings.hnsw_ef_search),
            seed=int(settings.seed),
        )


@dataclass(frozen=True)
class IndexReport:
    """What ``build_index`` chose and measured; ``to_config`` is what the artifact config records."""

    kind: str
    n_items: int
    nlist: int | None = None
    search_effort: int | None = None  # IVF nprobe or HNSW efSearch
    recall_at_k: float | None = None  # mean recall@k vs exact on the calibration queries
    k: int = CALIBRATION_K
    target_recall: float | None = None
    calibration_queries: int = 0
    build_s: float = 0.0
    hnsw_m: int | None = None

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "n_items": self.n_items, "build_s": round(self.build_s, 3)}
        if self.kind == EXACT:
            return out
        if self.kind == IVF:
            out.update(nlist=self.nlist, nprobe=self.search_effort)
        else:
            out.update(hnsw_m=self.hnsw_m, ef_search=self.search_effort)
        out.update(
            target_recall=self.target_recall,
            recall_k=self.k,
            calibrated_recall=self.recall_at_k,
            calibration_queries=self.calibration_queries,
        )
        return out


def stored_search_effort(ann_config: Mapping[str, Any] | None) -> tuple[str, int] | None:
    """(kind, effort) from an artifact's ``config["ann"]``; None for exact or a config without one."""
    if not isinstance(ann_config, Mapping):
        return None
    kind = ann_config.get("kind")
    value = ann_config.get("nprobe" if kind == IVF else "ef_search" if kind == HNSW else "")
    return (str(kind), int(value)) if value is not None else None


def index_kind(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIVF):
        return IVF
    if isinstance(index, faiss.IndexHNSW):
        return HNSW
    return EXACT


def set_search_effort(index: faiss.Index, value: int) -> None:
    """IVF nprobe (clamped to nlist) or HNSW efSearch; exact indexes have no effort to set."""
    if isinstance(index, faiss.IndexIVF):
        index.nprobe = max(1, min(int(value), index.nlist))
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = max(1, int(value))


def search_effort(index: faiss.Index) -> int | None:
    if isinstance(index, faiss.IndexIVF):
        return int(index.nprobe)
    if isinstance(index, faiss.IndexHNSW):
        return int(index.hnsw.efSearch)
    return None


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    scores, ids = index.search(q, k)
    return scores, ids


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as serving normalizes query vectors); zero or non-finite rows dropped."""
    vecs = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1)
    keep = np.isfinite(norms) & (norms > 0)
    return np.ascontiguousarray(vecs[keep] / norms[keep, None], dtype=np.float32)


def sample_rows(vectors: np.ndarray, n: int = CALIBRATION_QUERIES, seed: int = 0) -> np.ndarray:
    """Up to ``n`` random row numbers of ``vectors`` (e.g. user embeddings) whose rows have a finite,
    non-zero norm, in order."""
    norms = np.linalg.norm(np.asarray(vectors, dtype=np.float32), axis=1)
    usable = np.flatnonzero(np.isfinite(norms) & (norms > 0))
    if len(usable) > n:
        usable = np.sort(np.random.default_rng(seed).choice(usable, n, replace=False))
    return usable


def synthetic_queries(items: np.ndarray, n: int = CALIBRATION_QUERIES, seed: int = 0) -> np.ndarray:
    """Stand-in queries when no user vectors are at hand: random positive mixes of 1-3 item rows."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(items), size=(n, 3))
    weights = rng.random((n, 3)).astype(np.float32) * (rng.random((n, 3)) < [1.0, 0.6, 0.3])
    weights[:, 0] += 0.1
    mixes = np.einsum("qj,qjd->qd", weights, items[rows])
    return unit_rows(mixes)


def auto_nlist(n_items: int, requested: int = 0) -> int:
    nlist = requested if requested > 0 else round(4 * math.sqrt(n_items))
    return max(1, min(nlist, n_items // MIN_POINTS_PER_CENTROID, MAX_NLIST))


def build_index(
    item_embeddings: np.ndarray,
    *,
    exact_max_items: int,
    params: AnnParams | None = None,
    calibration_queries: np.ndarray | None = None,
    calibration_seen: Sequence[np.ndarray] | None = None,
) -> tuple[faiss.Index, IndexReport]:
    """Exact search up to ``exact_max_items`` items, else ``params.kind`` calibrated to its target.

    ``calibration_queries`` should look like serving's queries (unit-normalized user vectors) and must
    not be the queries a benchmark reports recall on; without them, mixes of item rows stand in.
    ``calibration_seen`` (item rows per calibration query) makes the recall that of the list serving
    shows with those items excluded."""
    started = time.perf_counter()
    params = params or AnnParams()
    vecs = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    n, d = vecs.shape
    if n <= exact_max_items:
        flat = faiss.IndexFlatIP(d)
        flat.add(vecs)
        report = IndexReport(kind=EXACT, n_items=n, build_s=time.perf_counter() - started)
        logger.info("faiss_index_built kind=exact items=%d dim=%d", n, d)
        return flat, report
    queries = _calibration_set(vecs, calibration_queries, params.seed)
    seen = (
        calibration_seen if calibration_seen is not None and len(calibration_seen) == len(queries) else None
    )
    k = max(1, min(params.k, n))
    depth = search_depth(k, seen, n)
    full = exact_search(vecs, queries, depth)
    truth = ExactTopK(*served_lists(full.scores, full.ids, seen, k))
    index: faiss.Index
    nlist: int | None = None
    if params.kind == IVF:
        nlist = auto_nlist(n, params.ivf_nlist)
        index = _build_ivf(vecs, nlist, params.seed)
        ladder = (1, nlist)
    else:
        index = _build_hnsw(vecs, params.hnsw_m, params.hnsw_ef_construction)
        # An efSearch below k keeps fewer candidates than results asked for: doubling starts at k.
        ladder = (k, max(params.hnsw_ef_search, k))
    effort, recall = calibrate(
        index, queries, truth, params.target_recall, ladder, (depth, seen), set_search_effort
    )
    set_search_effort(index, effort)
    report = IndexReport(
        kind=params.kind,
        n_items=n,
        nlist=nlist,
        search_effort=effort,
        recall_at_k=round(recall, 4),
        k=k,
        target_recall=params.target_recall,
        calibration_queries=len(queries),
        build_s=time.perf_counter() - started,
        hnsw_m=params.hnsw_m if params.kind == HNSW else None,
    )
    _log_report(report, d)
    return index, report


def build_serving_index(
    item_embeddings: np.ndarray,
    user_embeddings: np.ndarray,
    *,
    exact_max_items: int,
    params: AnnParams,
    seen: sp.csr_matrix | None = None,
) -> tuple[faiss.Index, IndexReport]:
    """The index retrain publishes: an approximate one is calibrated on up to 1000 random users'
    vectors, unit-normalized as serving normalizes its queries. ``seen`` (users x items, rows aligned
    with ``user_embeddings``) calibrates on the lists those users are shown with their items excluded."""
    approximate = len(item_embeddings) > exact_max_items
    users = np.asarray(user_embeddings)
    if not approximate or not len(users):
        return build_index(item_embeddings, exact_max_items=exact_max_items, params=params)
    rows = sample_rows(users, seed=params.seed)
    calibration = unit_rows(users[rows])  # every sampled row has a usable norm: none is dropped
    excluded = None
    if seen is not None and seen.shape[0] == len(users):
        excluded = [seen.indices[seen.indptr[r] : seen.indptr[r + 1]] for r in rows.tolist()]
    return build_index(
        item_embeddings,
        exact_max_items=exact_max_items,
        params=params,
        calibration_queries=calibration,
        calibration_seen=excluded,
    )


def _calibration_set(items: np.ndarray, given: np.ndarray | None, seed: int) -> np.ndarray:
    queries = unit_rows(np.atleast_2d(given)) if given is not None else np.empty((0, items.shape[1]))
    if len(queries) == 0:
        queries = synthetic_queries(items, seed=seed)
    if queries.shape[1] != items.shape[1]:
        raise ValueError(f"calibration queries have dim {queries.shape[1]}, items {items.shape[1]}")
    return np.ascontiguousarray(queries, dtype=np.float32)


def _build_ivf(vecs: np.ndarray, nlist: int, seed: int) -> faiss.IndexIVFFlat:
    n, d = vecs.shape
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    n_train = min(n, max(TRAIN_POINTS_PER_CENTROID * nlist, 10_000), MAX_TRAIN_POINTS)
    n_train = max(n_train, min(n, MIN_POINTS_PER_CENTROID * nlist))
    sample = vecs
    if n_train < n:
        sample = vecs[np.sort(np.random.default_rng(seed).choice(n, n_train, replace=False))]
    index.train(sample)
    index.add(vecs)
    return index


def _build_hnsw(vecs: np.ndarray, m: int, ef_construction: int) -> faiss.IndexHNSWFlat:
    index = faiss.IndexHNSWFlat(vecs.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = max(ef_construction, 2 * m)
    index.add(vecs)
    return index


def _log_report(report: IndexReport, dim: int) -> None:
    logger.info(
        "faiss_index_built kind=%s items=%d dim=%d nlist=%s effort=%s recall_at_%d=%.4f target=%.3f "
        "calibration_queries=%d build_s=%.1f",
        report.kind,
        report.n_items,
        dim,
        report.nlist,
        report.search_effort,
        report.k,
        report.recall_at_k or 0.0,
        report.target_recall or 0.0,
        report.calibration_queries,
        report.build_s,
    )


def ann_recall(
    item_embeddings: np.ndarray,
    queries: np.ndarray,
    k: int = 20,
    params: AnnParams | None = None,
    calibration_queries: np.ndarray | None = None,
) -> float:
    """Recall@k against exact search of the approximate index ``params`` builds, on ``queries``
    (which should not be the calibration queries)."""
    index, _ = build_index(
        item_embeddings, exact_max_items=0, params=params, calibration_queries=calibration_queries
    )
    return index_recall(index, item_embeddings, queries, k)


def serving_index_for(
    item_embeddings: np.ndarray,
    user_embeddings: np.ndarray,
    settings: Any,
    *,
    exact_max_items: int | None = None,
) -> tuple[faiss.Index, IndexReport]:
    """The index ``streamrec retrain`` builds for this catalog under ``settings`` (a
    ``core.settings.ModelSettings``): exact up to ``settings.exact_search_max_items`` items, otherwise
    its ``ann_index`` calibrated on the users' vectors. ``exact_max_items`` overrides the threshold (0
    forces the approximate index on any catalog, to measure what it costs)."""
    limit = int(settings.exact_search_max_items if exact_max_items is None else exact_max_items)
    return build_serving_index(
        item_embeddings, user_embeddings, exact_max_items=limit, params=AnnParams.from_settings(settings)
    )
