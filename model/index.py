"""FAISS inner-product search over item embeddings: exact below a catalog size, HNSW above."""

from __future__ import annotations

import logging

import faiss
import numpy as np

logger = logging.getLogger(__name__)


def build_index(
    item_embeddings: np.ndarray, exact_max_items: int = 200_000, hnsw_m: int = 32, ef_search: int = 128
) -> faiss.Index:
    vecs = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    n, d = vecs.shape
    index: faiss.Index
    if n <= exact_max_items:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = max(ef_search, 2 * hnsw_m)
        index.hnsw.efSearch = ef_search
    index.add(vecs)
    logger.info("faiss_index_built kind=%s items=%d dim=%d", type(index).__name__, n, d)
    return index


def set_ef_search(index: faiss.Index, ef_search: int) -> None:
    if isinstance(index, faiss.IndexHNSWFlat):
        index.hnsw.efSearch = ef_search


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(k, index.ntotal))
    scores, ids = index.search(q, k)
    return scores, ids


def ann_recall(
    item_embeddings: np.ndarray, queries: np.ndarray, k: int = 20, hnsw_m: int = 32, ef_search: int = 128
) -> float:
    """Recall@k of an HNSW index against exact inner-product search for the same queries."""
    exact = build_index(item_embeddings, exact_max_items=len(item_embeddings))
    approx = build_index(item_embeddings, exact_max_items=0, hnsw_m=hnsw_m, ef_search=ef_search)
    _, truth = search(exact, queries, k)
    _, found = search(approx, queries, k)
    hits = sum(len(set(t[t >= 0]) & set(f[f >= 0])) for t, f in zip(truth, found, strict=True))
    total = sum(int((t >= 0).sum()) for t in truth)
    return hits / max(total, 1)
