"""The models ``streamrec bench cold-start`` compares, each fitted on a ``ColdSplit`` and scoring its cold
items (and, for the hybrid, its warm items) for given user rows.

- ``Hybrid``: streamrec's trainer (``model.lae``, the product's settings) gives the warm items' output
  embeddings and the user tower; ``model.content`` maps catalog features to those embeddings (fitted on
  warm items as retrain fits it) and embeds every cold item from its metadata; a user scores an item by
  the inner product of their vector (recency-weighted history through the input embeddings, as serving
  folds in) with it, as serving scores a new item. For warm items the content embedding may be blended
  in with weight ``beta`` (0 = pure collaborative).
- ``CategoryPopularity``: a cold item scores the user's own share of training items in its categories,
  smoothed towards the categories' global share by ``alpha`` pseudo-items (averaged over an item's
  categories; ties broken by a seeded random order, never by item id, which follows release order).
- ``LightFMModel``: LightFM (WARP loss) with the same catalog features as the hybrid, with or without
  per-item identity features; a cold item's identity part is empty, so it is embedded from features only.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from core.settings import ModelSettings
from model.content import DEFAULT_REG_GRID, ContentFeaturizer, fit_content_map, tune_content_reg
from model.content_ranking import RankingFit, choose_content_fit, refine_content_map
from model.lae import TrainConfig, spectrum, train_lae
from model.pipeline import train_config
from model.recency import apply_recency
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
    """What retrain and serving do for a new item, with the product's settings (``ModelSettings``'
    defaults: recency weighting, diagonal correction, content fit) and only ``factors`` and ``reg``
    searched, as ``retrain --tune`` would."""

    factors: int = 256
    reg: float = 200.0
    content_reg: float | None = None  # None: chosen by model.content's held-out R² on warm items, as retrain
    seed: int = 42
    beta: float = 0.0  # weight of the content embedding in a warm item's embedding
    # The product's content fit (ModelSettings.content_fit, content_rank_steps): the ridge map alone,
    # or refined on the users' softmax ranking of warm items (model.content_ranking), or "auto": the one
    # that ranks held-out warm items better, as retrain does.
    content_fit: str = ModelSettings.model_fields["content_fit"].default
    rank_steps: int = ModelSettings.model_fields["content_rank_steps"].default
    content_reg_grid: tuple[float, ...] = DEFAULT_REG_GRID
    chosen_content_reg: float = field(init=False, default=0.0)
    chosen_content_fit: str = field(init=False, default="ridge")
    content_fit_scores: dict[str, float] = field(init=False, default_factory=dict)

    def config(self) -> TrainConfig:
        return dataclasses.replace(
            train_config(ModelSettings()), factors=self.factors, reg=self.reg, seed=self.seed
        )

    def fit(
        self, split: ColdSplit, features: Features, sv: tuple[np.ndarray, np.ndarray] | None = None
    ) -> Hybrid:
        cfg = self.config()
        if sv is None:
            torch.manual_seed(cfg.seed)
            sv = spectrum(split.train, cfg.factors, torch.device("cpu"))
        weights = train_lae(split.train, cfg, precomputed=sv)
        history = apply_recency(split.train, split.recency_ranks(), cfg.recency_boost, cfg.recency_half_life)
        self._users = np.asarray(history @ weights.input_emb, dtype=np.float32)
        self._warm = weights.output_emb
        self._bias = weights.bias
        if self.content_reg is None:
            self.chosen_content_reg, _ = tune_content_reg(
                features.warm, weights.output_emb, self.content_reg_grid, seed=self.seed
            )
        else:
            self.chosen_content_reg = self.content_reg
        content_map = fit_content_map(features.warm, weights.output_emb, self.chosen_content_reg)
        fit = RankingFit(max_steps=self.rank_steps, seed=self.seed)
        self.chosen_content_fit, self.content_fit_scores = self.content_fit, {}
        if self.content_fit == "auto":
            self.chosen_content_fit, self.content_fit_scores = choose_content_fit(
                features.warm,
                weights.output_emb,
                self.chosen_content_reg,
                self._users,
                split.train,
                fit,
                history=history,
                input_emb=weights.input_emb,
            )
        if self.chosen_content_fit == "ranking":
            content_map = refine_content_map(features.warm, content_map, self._users, split.train, fit)
        self._cold = np.asarray(features.cold @ content_map, dtype=np.float32)
        self._warm_content = np.asarray(features.warm @ content_map, dtype=np.float32)
        return self

    def cold_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self._users[rows] @ self._cold.T)

    def warm_scores(self, rows: np.ndarray, beta: float | None = None) -> np.ndarray:
        b = self.beta if beta is None else beta
        items = self._warm if b == 0.0 else (1.0 - b) * self._warm + b * self._warm_content
        return np.asarray(self._users[rows] @ items.T + self._bias)


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
