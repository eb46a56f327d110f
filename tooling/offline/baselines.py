"""Reference recommenders for the quality benchmark: popularity, EASE, ItemKNN, and implicit's iALS/BPR.

Each fits on a binary users x items CSR matrix and scores user rows as a dense array.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)


class Baseline(Protocol):
    """A reference model of the quality benchmark (not streamrec's read side, ``model.trained_model``)."""

    def fit(self, train: sp.csr_matrix) -> None: ...

    def score(self, rows: np.ndarray) -> np.ndarray: ...


class Popularity:
    def __init__(self) -> None:
        self._pop = np.zeros(0)

    def fit(self, train: sp.csr_matrix) -> None:
        self._pop = np.asarray(train.sum(axis=0)).ravel()

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.tile(self._pop, (len(rows), 1))


class EASE:
    """Steck 2019, exact. With fewer users than items it uses the Woodbury identity, so only a
    users x users matrix is inverted; the scores of unseen items are identical to the primal form."""

    def __init__(self, lam: float = 200.0) -> None:
        self.lam = lam
        self._b = np.zeros((0, 0), dtype=np.float32)
        self._dual_items = np.zeros((0, 0), dtype=np.float32)
        self._train: sp.csr_matrix | None = None

    def fit(self, train: sp.csr_matrix) -> None:
        self._train = train.astype(np.float64).tocsr()
        n_users, n_items = train.shape
        if n_items <= n_users:
            gram = (self._train.T @ self._train).toarray()
            gram[np.diag_indices_from(gram)] += self.lam
            p = np.linalg.inv(gram)
            b = p / (-np.diag(p))
            b[np.diag_indices_from(b)] = 0.0
            self._b = b.astype(np.float32)
            return
        x = self._train
        k = np.linalg.inv((x @ x.T).toarray() + self.lam * np.eye(n_users))
        kx = np.asarray(x.T @ k).T  # (users, items) = K X
        diag_p = (1.0 - np.asarray(x.multiply(kx).sum(axis=0)).ravel()) / self.lam
        # Score of unseen item j: (x_u X^T K X)_j / (lam * P_jj).
        self._dual_items = (kx / (self.lam * diag_p)).astype(np.float32)

    def score(self, rows: np.ndarray) -> np.ndarray:
        assert self._train is not None
        return self.scores_of(self._train[rows])

    def scores_of(self, hist: sp.csr_matrix) -> np.ndarray:
        """Scores for any (e.g. recency-weighted) history rows; exact for the items not in them."""
        assert self._train is not None
        if self._b.size:
            return np.asarray(hist @ self._b)
        return np.asarray((hist @ self._train.T) @ self._dual_items)


class ItemKNN:
    """Cosine item-item similarity keeping the ``k`` nearest neighbours of each item.

    Items no neighbour of the user's history reaches rank after every scored item, by popularity: a
    user whose history has no neighbours at all (common on sparse data) gets the popularity list, not
    an arbitrary order of zeros."""

    def __init__(self, k: int = 100) -> None:
        self.k = k
        self._sim: sp.csr_matrix | None = None
        self._train: sp.csr_matrix | None = None
        self._fallback = np.zeros(0)

    def fit(self, train: sp.csr_matrix) -> None:
        x = train.tocsc().astype(np.float32)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        xn = x @ sp.diags(1.0 / np.maximum(norms, 1e-12))
        sim = (xn.T @ xn).tocsr()
        sim.setdiag(0.0)
        sim.eliminate_zeros()
        self._sim = _keep_top_k_per_row(sim, self.k).T.tocsr()
        self._train = train
        pop = np.asarray(train.sum(axis=0), dtype=np.float64).ravel()
        # In [-1, 0): below every positive similarity sum, in popularity order.
        self._fallback = pop / (pop.max() + 1.0) - 1.0 if pop.size else pop

    def score(self, rows: np.ndarray) -> np.ndarray:
        assert self._sim is not None and self._train is not None
        scores = np.asarray((self._train[rows] @ self._sim).toarray(), dtype=np.float64)
        unscored = scores <= 0.0
        scores[unscored] = np.broadcast_to(self._fallback, scores.shape)[unscored]
        return scores


def _keep_top_k_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    data, indices, indptr = [], [], [0]
    for row in range(m.shape[0]):
        start, end = m.indptr[row], m.indptr[row + 1]
        d, i = m.data[start:end], m.indices[start:end]
        if len(d) > k:
            keep = np.argpartition(-d, k - 1)[:k]
            d, i = d[keep], i[keep]
        data.append(d)
        indices.append(i)
        indptr.append(indptr[-1] + len(d))
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=m.shape, dtype=np.float32
    )


def implicit_available() -> bool:
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


class ImplicitFactors:
    """implicit's CPU iALS or BPR; scores are user factors . item factors."""

    def __init__(self, kind: str, seed: int = 42, threads: int = 2, **params: Any) -> None:
        self.kind = kind
        self.seed = seed
        self.threads = threads
        self.params = params
        self._user = np.zeros((0, 0), dtype=np.float32)
        self._item = np.zeros((0, 0), dtype=np.float32)

    def fit(self, train: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model: Any
        # implicit runs its own threads; a multi-threaded BLAS underneath them oversubscribes or hangs
        # (implicit checks this when the model is built, so both happen under the limit).
        with threadpool_limits(limits=1, user_api="blas"):
            if self.kind == "ials":
                model = AlternatingLeastSquares(
                    random_state=self.seed,
                    num_threads=self.threads,
                    calculate_training_loss=False,
                    **self.params,
                )
            elif self.kind == "bpr":
                model = BayesianPersonalizedRanking(
                    random_state=self.seed, num_threads=self.threads, **self.params
                )
            else:
                raise ValueError(f"unknown implicit model {self.kind!r}")
            model.fit(train.astype(np.float32).tocsr(), show_progress=False)
        self._user = np.asarray(model.user_factors)
        self._item = np.asarray(model.item_factors)

    def score(self, rows: np.ndarray) -> np.ndarray:
        return self._user[rows] @ self._item.T
