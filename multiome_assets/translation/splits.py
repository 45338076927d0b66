"""Which cells train, validate (early stopping, calibration) and test a translator, per scenario.

- ``random``: 20% of the cells test; 10% of the rest validation.
- ``held_out_donor`` (a dataset with a ``batch_column``): train on the first donor (sorted), test on
  the others; validation carved from the training donor.
- ``held_out_cell_type`` (a dataset with cell types; the paper's "intra-dataset 2"): 20% of the cell
  types (at least one) held out whole as test; validation carved from the rest.

No test cell is ever a training or validation cell.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SCENARIOS = ("random", "held_out_donor", "held_out_cell_type")


def translation_splits(obs: pd.DataFrame, *, batch_column: str | None, cell_type_column: str | None,
                       seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1) -> pd.DataFrame:
    """Long table (cell, scenario, role), role in train / validation / test, one row per cell and scenario."""
    rng = np.random.default_rng(seed)
    n = len(obs)
    test = {"random": rng.permutation(n)[: max(1, round(test_fraction * n))]}
    if batch_column and obs[batch_column].nunique() > 1:
        donors = np.sort(obs[batch_column].astype(str).unique())
        test["held_out_donor"] = np.flatnonzero(obs[batch_column].astype(str).to_numpy() != donors[0])
    if cell_type_column:
        labels = obs[cell_type_column].astype("string")
        types = np.sort(labels.dropna().unique())
        if len(types) > 1:
            held = rng.choice(types, max(1, round(test_fraction * len(types))), replace=False)
            test["held_out_cell_type"] = np.flatnonzero(labels.isin(held).fillna(False).to_numpy())
    tables = []
    for scenario, test_cells in test.items():
        role = np.full(n, "train", dtype=object)
        role[test_cells] = "test"
        rest = np.flatnonzero(role == "train")
        role[rng.choice(rest, max(1, round(val_fraction * len(rest))), replace=False)] = "validation"
        tables.append(pd.DataFrame({"cell": obs.index.astype(str), "scenario": scenario, "role": role}))
    return pd.concat(tables, ignore_index=True)


def rows_of(splits: pd.DataFrame, cells: pd.Index, scenario: str, role: str) -> np.ndarray:
    """Positions in `cells` of the scenario's cells with that role."""
    chosen = splits[(splits.scenario == scenario) & (splits.role == role)].cell
    rows = pd.Index(cells).get_indexer(chosen)
    if (rows < 0).any():
        raise ValueError(f"translation_splits names {int((rows < 0).sum())} cells the multiome lacks "
                         f"(e.g. {list(chosen[rows < 0][:3])}); rematerialize translation_splits")
    return np.sort(rows)
