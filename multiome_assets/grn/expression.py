"""Expression input of the expression baselines: validation, and correlations of its columns
computed a block of cells at a time, so that a 10x run's (cells, genes) matrix is never held dense
(12,000 cells x 10,000 GRN genes: 1 GB a float64 copy)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

Expression = np.ndarray | sp.spmatrix | sp.sparray

BLOCK_ELEMENTS = 1 << 22  # cells x genes densified at once: 32 MB of float64


def check_expression(X: Expression, genes) -> pd.Index:
    """`genes` as an index, after checking them (unique) and X (one column per gene, finite values)."""
    genes = pd.Index(np.asarray(genes, dtype=object))
    if not genes.is_unique:
        dup = genes[genes.duplicated()].unique()
        raise ValueError(f"`genes` has {len(dup)} duplicated names, e.g. {list(dup[:3])}; make them unique")
    if X.ndim != 2 or X.shape[1] != len(genes):
        raise ValueError(f"X has shape {X.shape}; expected (cells, {len(genes)}) to match `genes`")
    values = X.data if sp.issparse(X) else np.asarray(X)
    if not np.isfinite(values).all():
        raise ValueError(f"X has {int((~np.isfinite(values)).sum())} non-finite values")
    return genes


def regulator_columns(X: Expression, genes, regulators) -> np.ndarray:
    """The (R,) column of each regulator in X (`check_expression`; every regulator among the genes)."""
    genes = check_expression(X, genes)
    regulators = np.asarray(regulators, dtype=object)
    reg_idx = genes.get_indexer(regulators)
    if len(reg_idx) == 0:
        raise ValueError("`regulators` is empty; pass the regulator names present among `genes`")
    if (reg_idx < 0).any():
        missing = regulators[reg_idx < 0]
        raise ValueError(
            f"{len(missing)} of {len(reg_idx)} regulators are not among `genes`, e.g. "
            f"{list(missing[:3])}; intersect the regulator list with the genes first"
        )
    return reg_idx


def dense_expression(X: Expression, genes, regulators) -> tuple[np.ndarray, np.ndarray]:
    """Validated dense (cells, G) float64 copy of X and the (R,) column of each regulator (for
    GRNBoost2, which reads its sample of cells dense)."""
    reg_idx = regulator_columns(X, genes, regulators)
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64), reg_idx


def cell_blocks(X: Expression) -> Iterator[np.ndarray]:
    """Dense float64 copies of consecutive blocks of X's rows, BLOCK_ELEMENTS values each."""
    X = X.tocsr() if sp.issparse(X) else X
    step = max(1, BLOCK_ELEMENTS // max(X.shape[1], 1))
    for start in range(0, X.shape[0], step):
        block = X[start:start + step]
        yield np.array(block.toarray() if sp.issparse(block) else block, dtype=np.float64)


def correlations(X: Expression, columns: np.ndarray | None = None, dtype=np.float64) -> np.ndarray:
    """(len(columns), G) Pearson r of X's `columns` (None: every column) with every column, in
    `dtype`. A constant column (sd within 1e-12 of its largest value) correlates 0 with everything.

    Z = the columns centred and scaled to unit variance; r = Z[:, columns]^T Z / cells, summed over
    blocks of cells (:func:`cell_blocks`): the same products as one dense matrix would take."""
    n, G = X.shape
    mean = sum(block.sum(0) for block in cell_blocks(X)) / n
    squares, peak = np.zeros(G), np.zeros(G)
    for block in cell_blocks(X):
        peak = np.maximum(peak, np.abs(block).max(0))
        block -= mean
        squares += (block * block).sum(0)
    sd = np.sqrt(squares / n)
    varies = sd > 1e-12 * np.maximum(1.0, peak)
    out = np.zeros((G if columns is None else len(columns), G), dtype=dtype)
    for block in cell_blocks(X):
        block -= mean
        block[:, varies] /= sd[varies]
        block[:, ~varies] = 0.0
        Z = block.astype(dtype, copy=False)
        out += (Z if columns is None else Z[:, columns]).T @ Z
    out /= n
    return out


def column_ranks(X: Expression) -> Expression:
    """Each column's ranks among the cells, ties averaged (scipy's ``rankdata(method="average")``).
    Sparse X stays sparse (CSR): a column's ranks less its zeros' rank, so zeros stay 0 (a column's
    correlations do not change when a constant is added to it); ranked a block of columns at a time."""
    if not sp.issparse(X):
        return rankdata(X, axis=0, method="average")
    m = sp.csc_matrix(X, dtype=np.float64, copy=True)
    m.eliminate_zeros()
    n, G = m.shape
    step = max(1, BLOCK_ELEMENTS * G // max(m.nnz, 1))  # columns holding ~BLOCK_ELEMENTS values
    for c0 in range(0, G, step):
        p0, p1 = m.indptr[c0], m.indptr[min(c0 + step, G)]
        m.data[p0:p1] = _ranks_less_zero_rank(m.data[p0:p1], np.diff(m.indptr[c0:c0 + step + 1]), n)
    return m.tocsr()


def _ranks_less_zero_rank(values: np.ndarray, count: np.ndarray, n: int) -> np.ndarray:
    """The stored `values` of consecutive columns holding `count` of them each, out of `n` cells (the
    rest zeros): each one's average rank in its column less the column's zeros' average rank."""
    column = np.repeat(np.arange(len(count)), count)
    order = np.lexsort((values, column))  # by column, then value
    value, col = values[order], column[order]
    first = np.r_[True, (value[1:] != value[:-1]) | (col[1:] != col[:-1])]  # a run of ties starts here
    run = np.cumsum(first) - 1
    start = np.flatnonzero(first)
    zeros, run_col = n - count, col[start]
    below = start - np.r_[0, np.cumsum(count)[:-1]][run_col] + np.where(value[start] > 0, zeros[run_col], 0)
    zero_rank = np.bincount(column, weights=values < 0, minlength=len(count)) + (zeros + 1) / 2
    length = np.diff(np.r_[start, len(value)])
    ranks = np.empty(len(values))
    ranks[order] = below[run] + (length[run] + 1) / 2 - zero_rank[col]
    return ranks
