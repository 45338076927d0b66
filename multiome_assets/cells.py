"""Cells per context, one rule for both methods.

A dataset's `cell_type_column` labels cells. `all` holds every cell; each cell type with at least
``MIN_CELLS_PER_CONTEXT`` labelled cells gets its own set (with fewer, a 2-cell type "owns" dozens
of cCREs and its GRN is noise). A cell without a label (missing in the column) is in `all` only: it
is never a cell type of its own, never a group in a per-cell-type metric, never a held-out type.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from multiome_assets.dataset import DatasetError

MIN_CELLS_PER_CONTEXT = 10


def cell_labels(obs: pd.DataFrame, cell_type_column: str | None, source: str = "cell_type_column") -> np.ndarray | None:
    """Each cell's type as str, None where a cell is unlabelled; None without a cell_type_column."""
    if not cell_type_column:
        return None
    if cell_type_column not in obs:  # the setting changed after the cells were read
        raise DatasetError(f"{source}: cell_type_column {cell_type_column!r} is not a column of the cells "
                           f"(columns: {list(obs.columns)})")
    column = obs[cell_type_column]
    return np.where(column.notna().to_numpy(), column.astype(str).to_numpy(dtype=object), None)


def labelled(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the cells that have a label."""
    return pd.notna(labels)


def cell_types(labels: np.ndarray | None, min_cells: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The cell types (sorted) with at least `min_cells` labelled cells, and their counts."""
    if labels is None:
        return np.array([], dtype=object), np.array([], dtype=int)
    names, counts = np.unique(labels[labelled(labels)].astype(str), return_counts=True)
    keep = counts >= min_cells
    return names[keep], counts[keep]


def cell_sets(labels: np.ndarray | None, n_cells: int, *, max_cells: int | None = None,
              max_cells_per_type: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """`all`, plus one set per cell type with at least MIN_CELLS_PER_CONTEXT cells: sorted cell
    positions. With `max_cells`, each set is a seeded sample of at most that many cells;
    `max_cells_per_type` (None: `max_cells`) bounds the cell-type sets on their own."""
    rng = np.random.default_rng(seed)
    per_type = max_cells if max_cells_per_type is None else max_cells_per_type

    def pick(rows: np.ndarray, budget: int | None) -> np.ndarray:
        return rows if budget is None else np.sort(rng.choice(rows, min(budget, len(rows)), replace=False))

    sets = {"all": pick(np.arange(n_cells), max_cells)}
    for name in cell_types(labels, MIN_CELLS_PER_CONTEXT)[0]:
        sets[str(name)] = pick(np.flatnonzero(labels == name), per_type)
    return sets
