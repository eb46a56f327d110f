"""SASRec (Kang & McAuley 2018) as a quality-benchmark baseline, trained with full softmax cross-entropy.

The model reads each user's training items in time order and, at every position, predicts the next item
over the whole catalog (full softmax, not SASRec's original sampled binary loss: Klenitskiy & Vasilev,
RecSys 2023, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", found this makes
SASRec beat BERT4Rec). A user is scored by the hidden state after their last training item against the
item embedding table (the input embeddings double as the output layer).

Time order comes from ``set_order`` (``Split.recency_ranks()``: 0 for the newest training item), which
must be called before ``fit``: the binary train matrix alone has no order. CPU only, seeded, and bounded
by ``max_train_s`` so one benchmark trial cannot run away. Nothing is pickled; the fitted weights live in
memory only.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

# A suggested search space for an Optuna search (``trial.suggest_*``): (low, high) ranges, "log" marks a
# log-uniform float, lists are categorical. Epochs are searched (too many overfit a small data set);
# max_train_s, not searched, bounds each trial's wall clock.
SASREC_SPACE: dict[str, Any] = {
    "hidden": [32, 64, 128],
    "blocks": [1, 2, 3],
    "heads": [1, 2],
    "dropout": (0.1, 0.5),
    "max_len": [50, 100, 200],
    "lr": (3e-4, 1e-2, "log"),
    "weight_decay": (1e-5, 1e-1, "log"),
    "epochs": (5, 60),
    "batch_size": [64, 128],
}


# Logits materialised at once in training (128 MB of float32): bounds memory on a large catalog.
LOGITS_PER_CHUNK = 1 << 25


class _Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a position-wise feed-forward."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, hidden)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (t.view(b, length, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        att = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, length, d)))
        return x + self.drop(self.ffn(self.norm2(x)))


class _Net(nn.Module):
    def __init__(self, n_items: int, hidden: int, blocks: int, heads: int, dropout: float, max_len: int):
        super().__init__()
        self.items = nn.Embedding(n_items + 1, hidden, padding_idx=0)  # id 0 pads; item j is j + 1
        self.positions = nn.Embedding(max_len, hidden)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(hidden, heads, dropout) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states (batch, len, hidden) of left-padded item sequences (batch, len)."""
        length = seq.shape[1]
        real = seq > 0
        causal = torch.ones(length, length, dtype=torch.bool, device=seq.device).tril()
        # A query sees earlier real items; it always sees itself, so a padded query has one key and the
        # softmax never runs over an empty row (NaN). Padded positions are ignored by the loss anyway.
        allowed = (causal & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=seq.device)
        allowed = allowed[:, None]  # broadcast over heads
        x = self.items(seq) + self.positions.weight[:length]
        x = self.drop(x) * real[..., None]
        for block in self.blocks:
            x = block(x, allowed) * real[..., None]
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every real item (the padding row excluded) from hidden states (..., hidden)."""
        return hidden @ self.items.weight[1:].T


def time_ordered_histories(ranks: sp.csr_matrix) -> list[np.ndarray]:
    """Per user, the training item columns oldest first (``ranks``: 0 for the newest, as
    ``Split.recency_ranks`` gives them)."""
    out = []
    for row in range(ranks.shape[0]):
        start, end = ranks.indptr[row], ranks.indptr[row + 1]
        order = np.argsort(-ranks.data[start:end], kind="stable")
        out.append(ranks.indices[start:end][order].astype(np.int64))
    return out


def training_windows(histories: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded (input, target) windows of token ids (item column + 1): every next-item transition of
    every history is a target exactly once; a history longer than ``max_len`` is cut into windows from
    its end, so long histories are not thrown away."""
    inputs, targets = [], []
    for hist in histories:
        tokens = hist + 1
        end = len(tokens)
        while end >= 2:
            start = max(0, end - max_len - 1)
            window = tokens[start:end]
            inp = np.zeros(max_len, dtype=np.int64)
            tgt = np.zeros(max_len, dtype=np.int64)
            inp[max_len - len(window) + 1 :] = window[:-1]
            tgt[max_len - len(window) + 1 :] = window[1:]
            inputs.append(inp)
            targets.append(tgt)
            end = start + 1  # the next window's last target is this window's first input
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)


def _same_entries(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    a, b = a.sorted_indices(), b.sorted_indices()
    return bool(np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices))


def last_window(hist: np.ndarray, max_len: int) -> np.ndarray:
    """The newest ``max_len`` items of a history as left-padded token ids (the scoring input)."""
    seq = np.zeros(max_len, dtype=np.int64)
    tail = hist[-max_len:] + 1
    if len(tail):
        seq[max_len - len(tail) :] = tail
    return seq


class SASRec:
    """The ``Baseline`` protocol plus ``set_order``. Scores are float32 (users x items); the benchmark
    masks each user's own training items."""

    def __init__(
        self,
        hidden: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.2,
        max_len: int = 50,
        lr: float = 3e-3,
        epochs: int = 20,  # ml-100k validation NDCG@10 is flat over 15-25 epochs, then falls
        batch_size: int = 128,
        weight_decay: float = 0.0,
        seed: int = 42,
        max_train_s: float = 300.0,  # checked after every batch: a fit overruns by at most one batch
    ) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be at least 2, got {max_len}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.hidden = hidden
        self.blocks = blocks
        self.heads = heads
        self.dropout = dropout
        self.max_len = max_len
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed
        self.max_train_s = max_train_s
        self._ranks: sp.csr_matrix | None = None
        self._histories: list[np.ndarray] = []
        self._net: _Net | None = None
        # Filled by fit, for reports: epochs actually run, whether max_train_s stopped training, the
        # last epoch's mean loss.
        self.epochs_run = 0
        self.stopped_by_time = False
        self.last_loss = float("nan")

    def set_order(self, ranks: sp.csr_matrix) -> None:
        """Each user's recency ranks of their training items (``Split.recency_ranks()``)."""
        self._ranks = ranks.tocsr()

    def fit(self, train: sp.csr_matrix) -> None:
        if self._ranks is None:
            raise ValueError("SASRec needs the training items' time order: call set_order(ranks) before fit")
        train = train.tocsr()
        same = self._ranks.shape == train.shape and self._ranks.nnz == train.nnz
        if not (same and _same_entries(self._ranks, train)):
            raise ValueError(
                f"set_order got ranks of shape {self._ranks.shape} with {self._ranks.nnz} entries; the train "
                f"matrix is {train.shape} with {train.nnz}: they must come from the same split"
            )
        started = time.perf_counter()
        torch.manual_seed(self.seed)
        rng = torch.Generator().manual_seed(self.seed)
        self._histories = time_ordered_histories(self._ranks)
        inputs, targets = (torch.from_numpy(a) for a in training_windows(self._histories, self.max_len))
        net = _Net(train.shape[1], self.hidden, self.blocks, self.heads, self.dropout, self.max_len)
        self._net = net
        opt = torch.optim.AdamW(
            net.parameters(), lr=self.lr, weight_decay=self.weight_decay, betas=(0.9, 0.98)
        )
        self.epochs_run, self.stopped_by_time = 0, False
        net.train()
        for _epoch in range(self.epochs):
            order = torch.randperm(len(inputs), generator=rng)
            total, count = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                loss = self._step(net, opt, inputs[batch], targets[batch])
                total, count = total + loss, count + 1
                if time.perf_counter() - started > self.max_train_s:
                    self.stopped_by_time = True
                    break
            self.epochs_run += 1
            self.last_loss = total / max(count, 1)
            if self.stopped_by_time:
                break
        net.eval()
        logger.info(
            "sasrec_fit users=%d items=%d windows=%d epochs=%d loss=%.4f stopped_by_time=%s seconds=%.1f",
            train.shape[0],
            train.shape[1],
            len(inputs),
            self.epochs_run,
            self.last_loss,
            self.stopped_by_time,
            time.perf_counter() - started,
        )

    @staticmethod
    def _step(net: _Net, opt: torch.optim.Optimizer, inp: torch.Tensor, tgt: torch.Tensor) -> float:
        """One optimizer step of full softmax cross-entropy at the positions that have a next item.

        The positions x catalog logits are built a chunk at a time (each chunk's backward runs before
        the next is built) so a large catalog (Taobao: ~45k items) never holds gigabytes of logits; the
        gradient is the same as one big cross-entropy's."""
        opt.zero_grad(set_to_none=True)
        real = tgt > 0
        hidden = net(inp)[real]
        labels = tgt[real] - 1
        detached = hidden.detach().requires_grad_()
        n_items = net.items.num_embeddings - 1
        chunk = max(1, LOGITS_PER_CHUNK // n_items)
        total = 0.0
        for start in range(0, len(labels), chunk):
            part = slice(start, start + chunk)
            loss = F.cross_entropy(net.logits(detached[part]), labels[part], reduction="sum") / len(labels)
            loss.backward()  # item-embedding grads of the output side, and detached.grad
            total += float(loss.item())
        hidden.backward(detached.grad)  # the transformer's and input embeddings' grads
        opt.step()
        return total

    def score(self, rows: np.ndarray, batch: int = 256) -> np.ndarray:
        if self._net is None:
            raise ValueError("SASRec.score called before fit")
        out = []
        with torch.no_grad():
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                seq = np.stack([last_window(self._histories[int(r)], self.max_len) for r in chunk])
                hidden = self._net(torch.from_numpy(seq))[:, -1]
                out.append(self._net.logits(hidden).numpy())
        n_items = self._net.items.num_embeddings - 1
        return np.concatenate(out) if out else np.zeros((0, n_items), dtype=np.float32)


def suggest(trial: Any, space: dict[str, Any] = SASREC_SPACE) -> dict[str, Any]:
    """Draw SASRec params from an Optuna trial over ``space`` (lists: categorical, tuples: ranges)."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        elif all(isinstance(v, int) for v in spec[:2]):
            params[name] = trial.suggest_int(name, spec[0], spec[1])
        else:
            params[name] = trial.suggest_float(name, spec[0], spec[1], log=len(spec) > 2 and spec[2] == "log")
    return params
