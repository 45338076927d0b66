"""Regulator × gene pairs for the Stage 2 heads: a pair (r, g) is the flat index r * G + g.

Unlabeled pairs are drawn uniformly from regulator × gene, never a self-pair and never a training
positive.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp


def forbidden_flat_index(
    regulator_index: np.ndarray, train_rows: np.ndarray, train_cols: np.ndarray, n_genes: int
) -> np.ndarray:
    """Sorted unique flat indices of self-pairs ``(r, regulator_index[r])`` and training positives."""
    regulator_index = np.asarray(regulator_index, dtype=np.int64)
    self_flat = np.arange(len(regulator_index), dtype=np.int64) * n_genes + regulator_index
    pos_flat = np.asarray(train_rows, dtype=np.int64) * n_genes + np.asarray(train_cols, dtype=np.int64)
    return np.union1d(self_flat, pos_flat)


def sample_unlabeled(
    n: int, n_regulators: int, n_genes: int, forbidden: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n, 2) pairs (regulator row, gene column) uniform over the pairs not in ``forbidden``.

    ``forbidden`` is a sorted array of flat indices (:func:`forbidden_flat_index`). Draws
    flat indices with replacement, drops forbidden ones by binary search, tops up.
    """
    total = n_regulators * n_genes
    n_allowed = total - len(forbidden)
    if n_allowed <= 0:
        raise ValueError(f"all {total} regulator x gene pairs are forbidden; nothing to sample as unlabeled")
    accept = n_allowed / total
    chunks, have = [], 0
    while have < n:
        m = int(math.ceil((n - have) / accept * 1.05)) + 16
        draws = rng.integers(0, total, size=m, dtype=np.int64)
        if len(forbidden):
            pos = np.minimum(np.searchsorted(forbidden, draws), len(forbidden) - 1)
            draws = draws[forbidden[pos] != draws]
        chunks.append(draws[: n - have])
        have += len(chunks[-1])
    flat = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    return np.stack([flat // n_genes, flat % n_genes], axis=1)  # (n, 2)


def as_pairs(train_pairs, n_regulators: int, n_genes: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique (rows, cols) from an (n, 2) array or an (R, G) sparse/dense boolean matrix."""
    if sp.issparse(train_pairs):
        if train_pairs.shape != (n_regulators, n_genes):
            raise ValueError(f"train matrix has shape {train_pairs.shape}, expected {(n_regulators, n_genes)}")
        coo = sp.coo_matrix(train_pairs)
        keep = coo.data != 0
        rows, cols = coo.row[keep], coo.col[keep]
    else:
        arr = np.asarray(train_pairs)
        if arr.ndim == 2 and arr.shape == (n_regulators, n_genes) and arr.dtype == bool:
            rows, cols = np.nonzero(arr)
        elif arr.ndim == 2 and arr.shape[1] == 2:
            rows, cols = arr[:, 0], arr[:, 1]
        else:
            raise ValueError(
                f"train_pairs must be (n, 2) (regulator row, gene column) pairs or an (R, G) = "
                f"{(n_regulators, n_genes)} boolean matrix; got shape {arr.shape}"
            )
    rows, cols = rows.astype(np.int64), cols.astype(np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= n_regulators or cols.min() < 0 or cols.max() >= n_genes):
        raise ValueError(f"train pairs fall outside the {n_regulators} x {n_genes} regulator x gene space")
    flat = np.unique(rows * n_genes + cols)
    return flat // n_genes, flat % n_genes
