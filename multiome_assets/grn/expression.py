"""Expression input of the expression baselines: a validated dense copy and the regulators' columns."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

Expression = np.ndarray | sp.spmatrix | sp.sparray


def dense_expression(X: Expression, genes, regulators) -> tuple[np.ndarray, np.ndarray]:
    """Validated dense (cells, G) float64 copy of X and the (R,) column of each regulator."""
    genes = pd.Index(np.asarray(genes, dtype=object))
    if not genes.is_unique:
        dup = genes[genes.duplicated()].unique()
        raise ValueError(f"`genes` has {len(dup)} duplicated names, e.g. {list(dup[:3])}; make them unique")
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
    return dense(X, len(genes)), reg_idx


def dense(X: Expression, n_genes: int) -> np.ndarray:
    if X.ndim != 2 or X.shape[1] != n_genes:
        raise ValueError(f"X has shape {X.shape}; expected (cells, {n_genes}) to match `genes`")
    Xd = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    if not np.isfinite(Xd).all():
        raise ValueError(f"X has {int((~np.isfinite(Xd)).sum())} non-finite values")
    return Xd
