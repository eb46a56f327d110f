"""Content-based item embeddings for cold start: catalog metadata -> the collaborative embedding space.

An item without interactions has no collaborative embedding, so it cannot be recommended or asked for
``/similar`` until a retrain sees it interact. This module gives it one from its catalog document alone:

1. ``ContentFeaturizer`` turns item documents (``title``, ``category``, ``price``, ``properties``, as the
   catalog stores them) into a sparse, row-normalised feature matrix: category and each part of a
   category path or genre list, brand, a log-spaced price band, title words (a vocabulary capped to the
   most frequent words), and each scalar property (strings and booleans one-hot, numbers log-binned).
   Its vocabulary is plain JSON (``to_json`` / ``from_json``), never a pickle.
2. ``fit_content_map`` is the closed-form ridge regression from those features to any per-item targets,
   typically the trained model's item embeddings of the warm items; ``tune_content_reg`` picks its
   strength on held-out warm items.
3. ``ContentModel(featurizer, weights).embed(items)`` maps new items into the target space.

Usage (what retrain and ``streamrec bench cold-start`` do)::

    featurizer = ContentFeaturizer().fit(warm_docs)
    X = featurizer.transform(warm_docs)                      # csr (n_warm, n_features)
    reg, _ = tune_content_reg(X, warm_targets)               # held-out warm items pick the ridge strength
    model = ContentModel(featurizer, fit_content_map(X, warm_targets, reg))
    cold_vectors = model.embed(cold_docs)                    # (n_cold, targets.shape[1]) float32

or ``fit_content_model(warm_docs, warm_targets)`` for all of it. Pure numpy/scipy, no IO.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from model.errors import EmptyDataError

VOCAB_FORMAT = 1
# A category string may be a path ("Books > Fiction > Crime", "a/b") or a list of genres
# ("Action|Comedy"): each part is a feature of its own, so items sharing a parent or a genre share it.
_CATEGORY_SPLIT = re.compile(r"\s*[|>/;,]\s*")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Price bands: 4 per factor of 10 (1, 1.8, 3.2, 5.6, 10, ...), so "similar price" means the same band.
BANDS_PER_DECADE = 4
BIAS = "_bias"
# Group weights before row normalisation: a title has many words, a category one value; without them
# the title would dominate every row.
GROUP_WEIGHTS = {"cat": 1.0, "catpart": 1.0, "brand": 1.0, "price": 0.5, "word": 1.0, "prop": 0.7}
# Up to 10,000: strong shrinkage toward the mean warm item is the right answer when the metadata says
# little about taste (amazon-magazine chose the old grid's top, then 300); each point costs little (one
# eigendecomposition serves the whole grid).
DEFAULT_REG_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10_000.0)
# Target columns the reg search scores through (a random projection of wider targets).
PROJECTED_DIM = 64


def _band(value: float) -> int:
    """Log-spaced bin of a non-negative number (negatives are mirrored); 0 and below 1 share band 0."""
    mag = abs(value)
    band = 0 if mag < 1.0 else 1 + math.floor(math.log10(mag) * BANDS_PER_DECADE)
    return -band if value < 0 else band


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def item_tokens(item: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(group, feature name) pairs of one catalog document; unknown fields and Nones are ignored."""
    out: list[tuple[str, str]] = []
    category = item.get("category")
    if isinstance(category, str) and category.strip():
        out.append(("cat", f"cat={_norm(category)}"))
        parts = [p for p in _CATEGORY_SPLIT.split(_norm(category)) if p]
        if len(parts) > 1:
            out.extend(("catpart", f"catpart={p}") for p in dict.fromkeys(parts))
    brand = item.get("brand")  # a top-level brand (serving's catalog records carry one)
    if isinstance(brand, str) and brand.strip():
        out.append(("brand", f"brand={_norm(brand)}"))
    price = item.get("price")
    if isinstance(price, int | float) and not isinstance(price, bool) and math.isfinite(price):
        out.append(("price", f"price~{_band(float(price))}"))
    title = item.get("title")
    if isinstance(title, str):
        words = dict.fromkeys(w for w in _WORD.findall(title.lower()) if len(w) > 1 and not w.isdigit())
        out.extend(("word", f"word={w}") for w in words)
    props = item.get("properties")
    if isinstance(props, Mapping):
        for key, value in sorted(props.items()):
            out.extend(_property_tokens(str(key).lower(), value))
    return list(dict.fromkeys(out))  # a brand both top-level and in properties counts once


def _property_tokens(key: str, value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if key == "brand" and isinstance(value, str):
        return [("brand", f"brand={_norm(value)}")]
    if isinstance(value, bool):
        return [("prop", f"prop:{key}={str(value).lower()}")]
    if isinstance(value, int | float):
        return [("prop", f"prop:{key}~{_band(float(value))}")] if math.isfinite(value) else []
    if isinstance(value, str) and value.strip():
        return [("prop", f"prop:{key}={_norm(value)[:64]}")]
    return []


@dataclass
class ContentFeaturizer:
    """Catalog documents -> sparse features over a vocabulary learnt by ``fit``.

    ``max_words`` caps the title vocabulary to the most frequent words and ``min_count`` drops any
    feature seen on fewer items (noise that the ridge map would only overfit). Features unseen at fit
    time are ignored by ``transform``; every row also has a constant ``_bias`` feature, so an item with
    no usable metadata maps to the mean warm item rather than to zero.
    """

    max_words: int = 5000
    min_count: int = 2
    vocabulary: dict[str, int] = field(default_factory=dict)

    def fit(self, items: Sequence[Mapping[str, Any]]) -> ContentFeaturizer:
        counts: Counter[str] = Counter()
        groups: dict[str, str] = {}
        for item in items:
            for group, name in item_tokens(item):
                counts[name] += 1
                groups[name] = group
        kept = [n for n, c in counts.items() if c >= self.min_count and groups[n] != "word"]
        words = [(n, c) for n, c in counts.items() if c >= self.min_count and groups[n] == "word"]
        words.sort(key=lambda nc: (-nc[1], nc[0]))
        names = [BIAS, *sorted(kept), *sorted(n for n, _ in words[: self.max_words])]
        self.vocabulary = {name: i for i, name in enumerate(names)}
        return self

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def transform(self, items: Iterable[Mapping[str, Any]]) -> sp.csr_matrix:
        """One L2-normalised row per item (plus the bias column at weight 1 before normalising)."""
        if not self.vocabulary:
            raise EmptyDataError("the content featurizer is not fitted")
        vocab = self.vocabulary
        indptr: list[int] = [0]
        indices: list[int] = []
        data: list[float] = []
        for item in items:
            cols: dict[int, float] = {0: 1.0}
            by_group: Counter[str] = Counter()
            present = [(g, vocab[n]) for g, n in item_tokens(item) if n in vocab]
            for g, _ in present:
                by_group[g] += 1
            for g, col in present:
                # A group's features share its weight, so ten title words weigh what one category does.
                cols[col] = GROUP_WEIGHTS[g] / math.sqrt(by_group[g])
            values = np.fromiter(cols.values(), dtype=np.float64, count=len(cols))
            values /= np.linalg.norm(values)
            indices.extend(cols.keys())
            data.extend(values.tolist())
            indptr.append(len(indices))
        return sp.csr_matrix(
            (np.asarray(data, np.float32), np.asarray(indices, np.int32), np.asarray(indptr, np.int64)),
            shape=(len(indptr) - 1, len(vocab)),
        )

    def to_json(self) -> str:
        names = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return json.dumps(
            {
                "format": VOCAB_FORMAT,
                "max_words": self.max_words,
                "min_count": self.min_count,
                "features": names,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> ContentFeaturizer:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != VOCAB_FORMAT:
            raise ValueError(f"not a content vocabulary of format {VOCAB_FORMAT}")
        names = data.get("features")
        if not isinstance(names, list) or not names or names[0] != BIAS:
            raise ValueError("content vocabulary lacks its feature list")
        return cls(
            max_words=int(data["max_words"]),
            min_count=int(data["min_count"]),
            vocabulary={str(n): i for i, n in enumerate(names)},
        )


def fit_content_map(features: sp.csr_matrix, targets: np.ndarray, reg: float) -> np.ndarray:
    """Ridge regression ``argmin_W ||X W - Y||^2 + reg ||W||^2``, closed form: (n_features, dim) float32.

    Solved in whichever of the primal (features x features) and dual (items x items) systems is
    smaller, in float64, so a 5k-word vocabulary over 100k items or 1k items over a large vocabulary are
    both one dense solve of at most a few thousand rows."""
    if reg <= 0:
        raise ValueError(f"reg must be positive, got {reg}")
    x = sp.csr_matrix(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    n, f = x.shape
    if n == 0 or y.shape[0] != n:
        raise EmptyDataError(f"cannot fit a content map on {n} items and {y.shape[0]} targets")
    if f <= n:
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += reg
        w = np.linalg.solve(gram, x.T @ y)
    else:
        gram = (x @ x.T).toarray()
        gram[np.diag_indices_from(gram)] += reg
        w = x.T @ np.linalg.solve(gram, y)
    return np.asarray(w, dtype=np.float32)


def r2_score(predicted: np.ndarray, targets: np.ndarray) -> float:
    """1 - SSE/SST over all entries: the share of the targets' variance (around their mean row) explained."""
    resid = float(((predicted - targets) ** 2).sum())
    total = float(((targets - targets.mean(axis=0)) ** 2).sum())
    return 1.0 - resid / total if total > 0 else 0.0


def tune_content_reg(
    features: sp.csr_matrix,
    targets: np.ndarray,
    grid: Sequence[float] = DEFAULT_REG_GRID,
    holdout: float = 0.2,
    seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """The ridge strength with the best R² on a random ``holdout`` share of the (warm) items, fitted on
    the rest; returns (best reg, {reg: held-out R²}). Too few items to hold out: the grid's middle.

    The whole grid costs one eigendecomposition of the smaller Gram matrix, and wide targets (an item
    embedding is 2 * 512 - 1 numbers) are scored through a random projection to ``PROJECTED_DIM``
    columns: ridge is linear in the targets, so the projection keeps the squared error's expectation."""
    n = features.shape[0]
    n_val = round(n * holdout)
    if n_val < 2 or n - n_val < 2:
        return float(grid[len(grid) // 2]), {}
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    y = np.asarray(targets, np.float64)
    if y.shape[1] > PROJECTED_DIM:
        y = y @ rng.normal(size=(y.shape[1], PROJECTED_DIM)) / np.sqrt(PROJECTED_DIM)
    x_tr = sp.csr_matrix(features[train], dtype=np.float64)
    x_val = sp.csr_matrix(features[val], dtype=np.float64)
    y_tr, y_val = y[train], y[val]
    primal = x_tr.shape[1] <= x_tr.shape[0]
    gram = (x_tr.T @ x_tr if primal else x_tr @ x_tr.T).toarray()
    evals, evecs = np.linalg.eigh(gram)
    evals = np.clip(evals, 0.0, None)
    # primal: W = V diag(1/(s+reg)) V^T X^T Y; dual: W = X^T U diag(1/(s+reg)) U^T Y
    rhs = evecs.T @ (x_tr.T @ y_tr if primal else y_tr)
    left = evecs if primal else np.asarray(x_tr.T @ evecs)
    val_left = np.asarray(x_val @ left)  # (n_val, rank)
    scores = {float(r): r2_score(val_left @ (rhs / (evals + r)[:, None]), y_val) for r in grid}
    best = max(scores, key=lambda r: (scores[r], r))
    return best, scores


@dataclass
class ContentModel:
    """A fitted featurizer plus the ridge map: ``embed`` gives vectors in the fitted targets' space."""

    featurizer: ContentFeaturizer
    weights: np.ndarray  # (n_features, dim) float32
    reg: float = 0.0
    validation_r2: float | None = None
    # How the map was fitted ("ridge" or "ranking", model.content_ranking) and, when that was chosen
    # on held-out items (content_fit "auto"), the scores it was chosen on.
    fit: str = "ridge"
    fit_scores: dict[str, float] = field(default_factory=dict)
    # The factor the serving-embedding part was scaled by (model.content_ranking.score_scale); 1: none.
    score_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.weights.ndim != 2 or self.weights.shape[0] != self.featurizer.n_features:
            raise ValueError(
                f"content weights have shape {self.weights.shape}; "
                f"expected ({self.featurizer.n_features}, dim)"
            )

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    def embed(self, items: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(len(items), dim) float32 content embeddings of catalog documents."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.featurizer.transform(items) @ self.weights, dtype=np.float32)


def fit_content_model(
    items: Sequence[Mapping[str, Any]],
    targets: np.ndarray,
    *,
    grid: Sequence[float] = DEFAULT_REG_GRID,
    max_words: int = 5000,
    min_count: int = 2,
    seed: int = 0,
) -> ContentModel:
    """Featurize warm ``items``, tune the ridge strength on held-out ones and fit on all of them;
    ``targets[i]`` is item i's embedding (e.g. the trained model's item embedding row)."""
    if len(items) != len(targets):
        raise ValueError(f"{len(items)} items but {len(targets)} target rows")
    featurizer = ContentFeaturizer(max_words=max_words, min_count=min_count).fit(items)
    x = featurizer.transform(items)
    reg, scores = tune_content_reg(x, targets, grid, seed=seed)
    return ContentModel(featurizer, fit_content_map(x, targets, reg), reg, scores.get(reg))
