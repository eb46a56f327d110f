"""The models ``streamrec bench cold-start`` compares, each fitted on a ``ColdSplit`` and scoring its cold
items (and, for the hybrid, its warm items) for given user rows.

- ``Hybrid``: retrain's own calls with the product's settings: ``model.pipeline.fit_embeddings`` (the
  warm items' serving embeddings and every shopper's serving vector) and ``content_for`` (the content
  map, its strength and fit chosen as retrain chooses them); every cold item is embedded from its
  metadata, and a shopper scores items by the inner product with their vector, warm and cold alike,
  as serving's ``model.hybrid`` does.
- ``CategoryPopularity``: a cold item scores the user's own share of training items in its categories,
  smoothed towards the categories' global share by ``alpha`` pseudo-items (averaged over an item's
  categories; ties broken by a seeded random order, never by item id, which follows release order).
- ``LightFMModel``: LightFM (WARP loss) with the same catalog features as the hybrid, with or without
  per-item identity features; a cold item's identity part is empty, so it is embedded from features only.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from core.settings import ModelSettings
from model.content import ContentFeaturizer
from model.interactions import Interactions
from model.lae import TrainConfig
from model.pipeline import content_for, fit_embeddings, train_config
from tooling.bench.cold_start_data import Catalog
from tooling.bench.cold_start_split import ColdSplit

Params = dict[str, Any]
ScoreFn = Callable[[np.ndarray], np.ndarray]


def lightfm_available() -> bool:
    return importlib.util.find_spec("lightfm") is not None


@dataclass
class Features:
    """Catalog features of a split's warm and cold items, from one featurizer fitted on the warm ones."""

    warm: sp.csr_matrix
    cold: sp.csr_matrix
    n_features: int

    @classmethod
    def of(cls, split: ColdSplit, catalog: Catalog) -> Features:
        warm_docs = [catalog.doc(str(i)) for i in split.warm_ids]
        cold_docs = [catalog.doc(str(i)) for i in split.cold_ids]
        featurizer = ContentFeaturizer().fit(warm_docs)
        return cls(featurizer.transform(warm_docs), featurizer.transform(cold_docs), featurizer.n_features)


@dataclass
class Hybrid:
    """What retrain and serving do for a new item: ``model.pipeline.fit_embeddings`` and ``content_for``
    (retrain's own calls) with the product's settings (``ModelSettings``), only ``factors`` and ``reg``
    searched, as ``retrain --tune`` would; a shopper scores an item by the inner product of their serving
    vector with the item's serving embedding, a new item's from its catalog document, as
    ``model.hybrid`` does."""

    factors: int = 256
    reg: float = 200.0
    seed: int = 42
    # The product's content fit (ModelSettings.content_fit, content_rank_steps): the ridge map alone,
    # or refined on the users' softmax ranking of warm items (model.content_ranking), or "auto": the one
    # that ranks held-out warm items better, as retrain does.
    content_fit: str = ModelSettings.model_fields["content_fit"].default
    rank_steps: int = ModelSettings.model_fields["content_rank_steps"].default
    chosen_content_reg: float = field(init=False, default=0.0)
    chosen_content_fit: str = field(init=False, default="none")
    content_fit_scores: dict[str, float] = field(init=False, default_factory=dict)

    def settings(self) -> ModelSettings:
        return ModelSettings.model_validate(
            {
                "factors": self.factors,
                "reg": self.reg,
                "seed": self.seed,
                "content_fit": self.content_fit,
                "content_rank_steps": self.rank_steps,
            }
        )

    def config(self) -> TrainConfig:
        return train_config(self.settings())

    def fit(self, split: ColdSplit, catalog: Catalog) -> Hybrid:
        settings = self.settings()
        warm_ids = split.warm_ids.astype(str)
        interactions = Interactions(
            matrix=sp.csr_matrix(split.train, dtype=np.float32),
            user_ids=split.user_ids.astype(str),
            item_ids=warm_ids,
            last_ts=split.train_ts,
        )
        fitted = fit_embeddings(interactions, self.config())
        docs = [{**catalog.docs[i], "item_id": i} for i in warm_ids.tolist() if i in catalog.docs]
        content = content_for(interactions, fitted, lambda: [docs], settings)
        width = fitted.item_emb.shape[1]
        self._users = fitted.user_emb
        self._warm = fitted.item_emb
        if content is None:  # too few trained items with metadata: retrain fits no map, new items wait
            self._cold = np.zeros((len(split.cold_ids), width), dtype=np.float32)
            return self
        self.chosen_content_reg, self.chosen_content_fit = content.reg, content.fit
        self.content_fit_scores = content.fit_scores
        self._cold = content.embed([catalog.doc(str(i)) for i in split.cold_ids])[:, :width]
        return self

    def cold_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._users[rows] @ self._cold.T)

    def warm_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._users[rows] @ self._warm.T)

    def served_scores(self, rows: np.ndarray) -> np.ndarray:
        """Warm items then cold ones, one ranking: serving merges the side set's items by score."""
        return np.hstack([self.warm_scores(rows), self.cold_scores(rows)])

    def served_without_content(self, rows: np.ndarray) -> np.ndarray:
        """The same columns with cold items out of reach: the list with no content cold start."""
        return np.hstack([self.warm_scores(rows), np.full((len(rows), len(self._cold)), -np.inf)])


@dataclass
class CategoryPopularity:
    alpha: float = 1.0
    seed: int = 0

    def fit(self, split: ColdSplit, catalog: Catalog) -> CategoryPopularity:
        names = sorted({c for i in (*split.warm_ids, *split.cold_ids) for c in catalog.cats(str(i))})
        col = {c: j for j, c in enumerate(names)}

        def membership(ids: np.ndarray, mean: bool) -> sp.csr_matrix:
            rows, cols, vals = [], [], []
            for r, item in enumerate(ids):
                cats = catalog.cats(str(item))
                for c in cats:
                    rows.append(r)
                    cols.append(col[c])
                    vals.append(1.0 / len(cats) if mean else 1.0)
            return sp.csr_matrix((vals, (rows, cols)), shape=(len(ids), max(len(names), 1)))

        per_user = (split.train @ membership(split.warm_ids, mean=True)).toarray()  # category counts
        total = per_user.sum(axis=0)
        self._global = total / max(total.sum(), 1e-12)
        self._per_user = per_user
        self._n_user = per_user.sum(axis=1, keepdims=True)
        self._cold_members = membership(split.cold_ids, mean=True)
        # Ties (items of the same categories) are broken by a random order far below any real difference.
        self._jitter = np.random.default_rng(self.seed).random(len(split.cold_ids)) * 1e-9
        return self

    def cold_scores(self, rows: np.ndarray) -> np.ndarray:
        shares = (self._per_user[rows] + self.alpha * self._global) / (self._n_user[rows] + self.alpha)
        return np.asarray((self._cold_members @ shares.T).T + self._jitter)

    def global_scores(self, rows: np.ndarray) -> np.ndarray:
        """The same with no personal part: the categories' global popularity."""
        scores = self._cold_members @ self._global + self._jitter
        return np.tile(scores, (len(rows), 1))


def _row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows summing to 1, as LightFM's documentation advises for item features."""
    sums = np.asarray(m.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / np.maximum(sums, 1e-12)) @ m, dtype=np.float32)


@dataclass
class LightFMModel:
    no_components: int = 64
    epochs: int = 20
    identity: bool = True  # per-item identity features next to the catalog features
    learning_rate: float = 0.05
    item_alpha: float = 1e-6
    seed: int = 42
    threads: int = 1  # LightFM is Hogwild: more than one thread makes its result vary run to run

    def fit(self, split: ColdSplit, features: Features) -> LightFMModel:
        from lightfm import LightFM

        n_warm, n_cold = len(split.warm_ids), len(split.cold_ids)
        warm, cold = features.warm, features.cold
        if self.identity:
            warm = sp.hstack([sp.identity(n_warm, format="csr"), warm], format="csr")
            cold = sp.hstack([sp.csr_matrix((n_cold, n_warm)), cold], format="csr")
        model = LightFM(
            loss="warp",
            no_components=self.no_components,
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            random_state=self.seed,
        )
        model.fit(
            split.train.tocoo(),
            item_features=_row_normalise(warm),
            epochs=self.epochs,
            num_threads=self.threads,
        )
        self._cold_bias, self._cold_emb = model.get_item_representations(_row_normalise(cold))
        self._user_bias, self._user_emb = model.get_user_representations()
        return self

    def cold_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._user_emb[rows] @ self._cold_emb.T + self._cold_bias)
