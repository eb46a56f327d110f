"""Validation folds of the offline protocol and what every candidate on a fold shares (computed once).

A fold is the protocol (``tooling.offline.split``) applied inside training data; the benchmark tunes on
the mean NDCG@10 over a few such folds, each one step earlier in time than the one before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from core.event_table import EventTable
from model.errors import EmptyDataError
from model.lae import TrainConfig, spectrum, train_lae
from model.trained_model import TrainedModel
from tooling.offline.baselines import Baseline
from tooling.offline.evaluation import evaluate
from tooling.offline.input_weights import input_matrix
from tooling.offline.split import Split

logger = logging.getLogger(__name__)

Params = dict[str, Any]
VALIDATION_FOLDS = 2
# The largest factor count searched: at or above a data set's rank (min(users, items)) it is full rank.
MAX_FACTORS = 1024


@dataclass
class Fold:
    """One split plus its event strengths, recency ranks, input matrices and their spectra (cached)."""

    split: Split
    strength: sp.csr_matrix | None  # summed event weights of the training pairs (None: binary only)
    events: EventTable | None = None  # the raw training events (tooling.offline.served.training_events)
    ranks: sp.csr_matrix = field(init=False)
    _inputs: dict[str, sp.csr_matrix] = field(default_factory=dict)
    _spectra: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ranks = self.split.recency_ranks()

    @property
    def rank(self) -> int:
        return min(self.split.n_users, self.split.n_items)

    def inputs(self, mode: str) -> sp.csr_matrix:
        if mode not in self._inputs:
            self._inputs[mode] = input_matrix(self.split, self.strength, mode)
        return self._inputs[mode]

    def spectrum(self, mode: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        if mode not in self._spectra:
            torch.manual_seed(seed)
            self._spectra[mode] = spectrum(self.inputs(mode), MAX_FACTORS, torch.device("cpu"))
        return self._spectra[mode]


def validation_folds(split: Split, n_folds: int = VALIDATION_FOLDS) -> list[Split]:
    """The protocol applied inside training, then again inside that training (one step earlier), ...

    Averaging over folds (different time windows) makes model selection less noisy where a validation
    test set holds few hits (Taobao: ~20)."""
    folds = [split.validation()]
    while len(folds) < n_folds:
        try:
            nxt = folds[-1].validation()
        except EmptyDataError:
            break
        if nxt.test.nnz == 0:
            break
        folds.append(nxt)
    return folds


def tune(make: Callable[[Params], Baseline], grid: list[Params], folds: list[Split]) -> tuple[Params, float]:
    """Grid search on the mean validation NDCG@10 (the demo's cheap comparison uses it)."""
    best: tuple[Params, float] = (grid[0], -1.0)
    for params in grid:
        scores = []
        for val in folds:
            model = make(params)
            model.fit(val.train)
            scores.append(evaluate(model.score, val.train, val.test)[0]["ndcg@10"])
        ndcg = float(np.mean(scores))
        logger.info("tune params=%s val_ndcg10=%.4f folds=%s", params, ndcg, [round(x, 4) for x in scores])
        if ndcg > best[1]:
            best = (params, ndcg)
    return best


def lae_scores(
    split: Split,
    inputs: sp.csr_matrix,
    ranks: sp.csr_matrix,
    cfg: TrainConfig,
    sv: tuple[np.ndarray, np.ndarray],
) -> Callable[..., np.ndarray]:
    """streamrec's closed-form fit scored through its read side (``TrainedModel.scores``)."""
    model = TrainedModel.from_weights(train_lae(inputs, cfg, precomputed=sv), cfg, split.item_ids)
    return lambda rows: model.scores(inputs[rows], ranks[rows])
