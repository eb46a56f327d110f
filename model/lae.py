"""streamrec's model: a low-rank linear autoencoder (LAE) over item embeddings, in PyTorch.

A user is the weighted sum of *input* item embeddings of their history, where the most recent items get a
boost; an item is scored by the inner product with its *output* embedding plus a popularity bias (folded
into a constant dimension for serving). Because the user tower is a function of the history, fold-in for
an unseen user is exact and costs one sparse-dense product.

Objective: ridge-regularised reconstruction ``||X - X P Q^T||^2 + reg ||P Q^T||^2`` with rank(P Q^T) <= d.
Its exact optimum is ``P = V diag(s^2 / (s^2 + reg)), Q = V`` with V, s the top-d right singular vectors and
values of X, which torch computes directly (randomised SVD for large matrices). ``epochs > 0`` then
fine-tunes P, Q and the bias by Adam on the multinomial (softmax) likelihood with input dropout.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import scipy.sparse as sp
import torch

from model.errors import DegenerateModelError, EmptyDataError
from model.recency import apply_recency

logger = logging.getLogger(__name__)

DENSE_SVD_MAX = 3000  # below this smaller dimension the exact Gram eigendecomposition is cheap


@dataclass(frozen=True)
class TrainConfig:
    factors: int = 512
    reg: float = 300.0  # ridge strength of the closed-form fit
    recency_boost: float = 6.0  # the most recent history item weighs (1 + boost) times an old one
    recency_half_life: float = 4.0  # ... and the boost halves every this many items back
    pop_weight: float = 0.0  # weight of the log-popularity bias
    diag_correction: bool = True  # rescale output embeddings as EASE's zero-diagonal constraint does
    epochs: int = 0  # softmax fine-tuning epochs after the closed-form fit
    lr: float = 1e-3
    dropout: float = 0.5
    batch_size: int = 256
    seed: int = 42
    device: str = "auto"
    # How the input matrix was built (model.history_weighting): training itself ignores them, but they
    # travel in the artifact's config so the gate's and serving's fold-in build histories alike.
    input_weighting: str = "binary"
    history_order: str = "latest"

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


@dataclass
class LAEWeights:
    input_emb: np.ndarray  # (n_items, d) float32
    output_emb: np.ndarray  # (n_items, d) float32
    bias: np.ndarray  # (n_items,) float32
    history: list[float] = field(default_factory=list)

    def user_vectors(self, rows: sp.csr_matrix) -> np.ndarray:
        """The user tower for any (already recency-weighted) history rows."""
        return np.asarray(rows @ self.input_emb, dtype=np.float32)

    def scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return self.user_vectors(rows) @ self.output_emb.T + self.bias


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to_torch_sparse(m: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    coo = m.tocoo()
    idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    return torch.sparse_coo_tensor(idx, values, m.shape, check_invariants=True).to(device)


def spectrum(matrix: sp.csr_matrix, rank: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Top-``rank`` singular values and right singular vectors (items x rank) of ``matrix``.

    When one side is small the exact answer comes from the eigendecomposition of the smaller Gram matrix
    (float64); otherwise a randomised SVD, seeded by the caller through torch's global generator.
    """
    n_users, n_items = matrix.shape
    rank = min(rank, n_users, n_items)
    if min(n_users, n_items) <= DENSE_SVD_MAX:
        by_users = n_users < n_items
        gram_sp = (matrix @ matrix.T) if by_users else (matrix.T @ matrix)
        gram = torch.from_numpy(gram_sp.toarray().astype(np.float64)).to(device)
        evals, evecs = torch.linalg.eigh(gram)
        evals, evecs = evals.flip(0)[:rank].clamp_min(0.0), evecs.flip(1)[:, :rank]
        s = evals.sqrt()
        keep = s > 1e-8 * max(float(s[0]), 1e-30)
        s, evecs = s[keep], evecs[:, keep]
        # With the users' Gram, right singular vectors are V = X^T U / s.
        v = torch.from_numpy(np.asarray(matrix.T @ evecs.cpu().numpy())).to(device) / s if by_users else evecs
        return s.cpu().numpy(), v.cpu().numpy()
    _, s_t, v_t = torch.svd_lowrank(
        _to_torch_sparse(matrix, device), q=min(rank + 10, n_users, n_items), niter=4
    )
    return s_t[:rank].double().cpu().numpy(), v_t[:, :rank].double().cpu().numpy()


def closed_form(
    s: np.ndarray, v: np.ndarray, factors: int, reg: float, diag_correction: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The exact rank-``factors`` ridge solution from a spectrum; zero-padded when the rank is smaller.

    With ``diag_correction`` item j's output embedding is divided by ``1 - W_jj`` (W = P Q^T). At full
    rank this turns the ridge solution into EASE's scores for every item the user has not seen (EASE's
    zero-diagonal constraint, via the Woodbury identity); at lower rank it is the same correction applied
    to the low-rank fit, so items are not penalised for how much of their own signal the fit explains.
    """
    d = min(factors, len(s))
    shrink = s[:d] ** 2 / (s[:d] ** 2 + reg)
    p = (v[:, :d] * shrink).astype(np.float32)
    q = v[:, :d].astype(np.float32)
    if diag_correction:
        self_weight = np.einsum("ij,ij->i", v[:, :d] * shrink, v[:, :d])
        q = (q / np.maximum(1.0 - self_weight, 1e-3)[:, None]).astype(np.float32)
    if d < factors:
        pad = np.zeros((p.shape[0], factors - d), dtype=np.float32)
        p, q = np.hstack([p, pad]), np.hstack([q, pad])
    return p, q


def train_lae(
    matrix: sp.csr_matrix,
    config: TrainConfig,
    recency_ranks: sp.csr_matrix | None = None,
    precomputed: tuple[np.ndarray, np.ndarray] | None = None,
) -> LAEWeights:
    """Fit on a users x items weight matrix; ``recency_ranks`` (same sparsity) enables the recency boost.

    ``precomputed`` is ``spectrum(matrix, >= factors)``, so a hyper-parameter grid decomposes only once."""
    n_users, n_items = matrix.shape
    if n_users == 0 or n_items == 0 or matrix.nnz == 0:
        raise EmptyDataError(f"cannot train on an empty matrix of shape {matrix.shape}")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    device = _device(config.device)
    matrix = matrix.tocsr().astype(np.float32)
    if not np.isfinite(matrix.data).all():
        raise DegenerateModelError("the interaction matrix contains NaN or inf weights")
    s, v = precomputed if precomputed is not None else spectrum(matrix, config.factors, device)
    if len(s) == 0 or not (np.isfinite(s).all() and np.isfinite(v).all()):
        raise DegenerateModelError("the decomposition of the interaction matrix is empty or non-finite")
    p, q = closed_form(s, v, config.factors, config.reg, config.diag_correction)
    pop = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float64)
    bias = (config.pop_weight * np.log1p(pop) / max(np.log1p(pop.max()), 1e-9)).astype(np.float32)
    weights = LAEWeights(input_emb=p, output_emb=q, bias=bias)
    if config.epochs > 0:
        inputs = (
            matrix
            if recency_ranks is None
            else apply_recency(matrix, recency_ranks, config.recency_boost, config.recency_half_life)
        )
        weights = fine_tune(weights, inputs, (matrix > 0).astype(np.float32).tocsr(), config, device)
    check_finite(weights)
    logger.info(
        "lae_trained users=%d items=%d factors=%d epochs=%d fit_s=%.2f",
        n_users,
        n_items,
        config.factors,
        config.epochs,
        time.perf_counter() - start,
    )
    return weights


def fine_tune(
    weights: LAEWeights,
    inputs: sp.csr_matrix,
    target: sp.csr_matrix,
    config: TrainConfig,
    device: torch.device,
) -> LAEWeights:
    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    emb_in = torch.nn.EmbeddingBag.from_pretrained(
        torch.from_numpy(weights.input_emb), freeze=False, mode="sum"
    )
    emb_in = emb_in.to(device)
    out_w = torch.nn.Parameter(torch.from_numpy(weights.output_emb).to(device))
    bias = torch.nn.Parameter(torch.from_numpy(weights.bias).to(device))
    opt = torch.optim.Adam([emb_in.weight, out_w, bias], lr=config.lr)
    active = np.flatnonzero(np.diff(target.indptr) > 0)
    history: list[float] = []
    for epoch in range(config.epochs):
        total = 0.0
        for users in np.array_split(
            rng.permutation(active), max(1, math.ceil(len(active) / config.batch_size))
        ):
            rows = inputs[users]
            w = torch.from_numpy(rows.data.astype(np.float32))
            keep = (torch.rand(len(w), generator=gen) >= config.dropout).float() / (1.0 - config.dropout)
            u = emb_in(
                torch.from_numpy(rows.indices.astype(np.int64)).to(device),
                torch.from_numpy(rows.indptr[:-1].astype(np.int64)).to(device),
                per_sample_weights=(w * keep).to(device),
            )
            logits = u @ out_w.T + bias
            tgt = target[users]
            row_idx = torch.from_numpy(np.repeat(np.arange(len(users)), np.diff(tgt.indptr))).to(device)
            col_idx = torch.from_numpy(tgt.indices.astype(np.int64)).to(device)
            log_p = logits[row_idx, col_idx] - torch.logsumexp(logits, dim=1)[row_idx]
            loss = -log_p.sum() / len(users)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        if not math.isfinite(total):
            raise DegenerateModelError(f"fine-tuning loss became non-finite at epoch {epoch}")
        history.append(total)
        logger.debug("lae_epoch epoch=%d loss=%.5f", epoch, total)
    return LAEWeights(
        input_emb=emb_in.weight.detach().cpu().numpy().astype(np.float32),
        output_emb=out_w.detach().cpu().numpy().astype(np.float32),
        bias=bias.detach().cpu().numpy().astype(np.float32),
        history=history,
    )


def check_finite(weights: LAEWeights) -> None:
    for name, arr in (("input", weights.input_emb), ("output", weights.output_emb), ("bias", weights.bias)):
        if not np.isfinite(arr).all():
            raise DegenerateModelError(f"{name} embeddings contain NaN or inf; the model is not usable")
    for name, arr in (("input", weights.input_emb), ("output", weights.output_emb)):
        if float(np.abs(arr).max(initial=0.0)) < 1e-12:
            raise DegenerateModelError(f"{name} embeddings are all zero; the fit collapsed")
