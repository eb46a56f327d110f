"""Recency weighting shared by training and fold-in; numpy only, so serving never imports torch."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def recency_weights(n: int, boost: float, half_life: float) -> np.ndarray:
    """Multipliers for a history of ``n`` items ordered oldest first."""
    back = np.arange(n - 1, -1, -1, dtype=np.float64)
    return (1.0 + boost * 0.5 ** (back / max(half_life, 1e-9))).astype(np.float32)


def apply_recency(
    matrix: sp.csr_matrix, ranks: sp.csr_matrix, boost: float, half_life: float
) -> sp.csr_matrix:
    """``ranks`` has matrix's sparsity: 0 for each user's most recent item, 1 for the one before, ..."""
    out = matrix.tocsr().astype(np.float32, copy=True)
    out.data = out.data * (1.0 + boost * 0.5 ** (ranks.data / max(half_life, 1e-9))).astype(np.float32)
    return out
