"""Baselines on the EpiAwareNet edge space: co-expression, GRNBoost2, degree, imported GRNs.

Every function returns a dense ``(R, G)`` float matrix over ``regulators × genes``, the
layout of :class:`~multiome_assets.grn.edge_space.EdgeSpace`. Expression baselines read
``X`` (cells × genes, log-normalized, dense or scipy sparse), the gene names of its
columns, and the regulator names (a subset of the genes); they are registered in
:data:`BASELINES` under the name the Dagster asset loops over.

Self-pairs (regulator == target) keep whatever value the method gives them (1 for
correlation and TOM, 0 for GRNBoost2); the metrics never evaluate them
(``EdgeSpace.candidate_mask``).

- :func:`pearson_scores`, :func:`spearman_scores`: ``|cor|``.
- :func:`wgcna_scores`: topological overlap of the soft-thresholded co-expression network
  (Zhang & Horvath 2005; WGCNA ``TOMsimilarity`` with ``TOMType="unsigned"``).
- :func:`~multiome_assets.grn.grnboost2.grnboost2_scores`: GRNBoost2 (Moerman et al. 2019)
  per-target gradient boosting with arboreto's settings, in its own module with its process pool.
- :func:`degree_baselines`: training-prior popularity, the bar a GRN method has to clear.
- :func:`import_external_grn`: a GRN table from another tool (SCENIC+, CellOracle, ...).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd

from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.expression import (
    Expression,
    check_expression,
    column_ranks,
    correlations,
    regulator_columns,
)
from multiome_assets.grn.grnboost2 import grnboost2_scores
from multiome_assets.priors import read_edge_table

__all__ = [
    "BASELINES",
    "expression_baselines",
    "pearson_scores",
    "spearman_scores",
    "soft_threshold_power",
    "wgcna_scores",
    "grnboost2_scores",
    "degree_baselines",
    "import_external_grn",
]

# ---------------------------------------------------------------------------------------
# Correlation
# ---------------------------------------------------------------------------------------
def pearson_scores(X: Expression, genes, regulators) -> np.ndarray:
    """Absolute Pearson correlation of each regulator with each gene.

    The absolute value is taken because a prior edge may be activating or repressing; the
    sign is not evaluated. Genes with zero variance score 0. ``X`` is read a block of cells at a
    time, never densified whole.

    Returns
    -------
    (R, G) float64 in [0, 1].
    """
    return _abs(correlations(X, regulator_columns(X, genes, regulators)))


def spearman_scores(X: Expression, genes, regulators) -> np.ndarray:
    """Absolute Spearman correlation: Pearson on per-gene ranks (ties get average ranks).

    Same conventions as :func:`pearson_scores`. On sparse data most ties are the zeros,
    which share one average rank; the ranks of sparse X stay sparse (:func:`.expression.column_ranks`).
    """
    return _abs(correlations(column_ranks(X), regulator_columns(X, genes, regulators)))


def _abs(cor: np.ndarray) -> np.ndarray:
    np.abs(cor, out=cor)
    return np.minimum(cor, 1.0, out=cor)


# ---------------------------------------------------------------------------------------
# WGCNA topological overlap
# ---------------------------------------------------------------------------------------
WGCNA_POWERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20)  # pickSoftThreshold's default
WGCNA_MIN_R2, WGCNA_DEFAULT_POWER = 0.8, 6  # a power's scale-free fit needed; the power when none fits


def _scale_free_r2(k: np.ndarray, n_breaks: int = 10) -> float:
    """WGCNA ``scaleFreeFitIndex``: signed R² of log10 p(k) ~ log10 k over `n_breaks` bins."""
    edges = np.linspace(k.min(), k.max(), n_breaks + 1)
    b = np.clip(np.searchsorted(edges, k, side="left") - 1, 0, n_breaks - 1)  # right-closed bins
    count = np.bincount(b, minlength=n_breaks)
    mean_k = np.bincount(b, weights=k, minlength=n_breaks) / np.maximum(count, 1)
    mids = (edges[:-1] + edges[1:]) / 2
    dk = np.where((count == 0) | (mean_k == 0), mids, mean_k)
    with np.errstate(divide="ignore"):
        log_dk = np.log10(dk)
    log_p = np.log10(count / len(k) + 1e-9)
    ok = np.isfinite(log_dk)
    if ok.sum() < 3 or np.ptp(log_dk[ok]) == 0:
        return 0.0
    slope = np.polyfit(log_dk[ok], log_p[ok], 1)[0]
    r = np.corrcoef(log_dk[ok], log_p[ok])[0, 1]
    return float(-np.sign(slope) * r**2)


def soft_threshold_power(
    X: Expression,
    genes,
    *,
    powers: tuple[int, ...] = WGCNA_POWERS,
    min_r2: float = WGCNA_MIN_R2,
    default: int = WGCNA_DEFAULT_POWER,
) -> int:
    """Lowest β whose connectivity fits a scale-free law with signed R² ≥ `min_r2`.

    WGCNA ``pickSoftThreshold`` (unsigned network, connectivity excludes the gene itself);
    returns `default` when no power reaches `min_r2`, which is common on small, sparse
    single-cell data.
    """
    check_expression(X, genes)
    return _pick_power(_abs_cor_matrix(X), powers, min_r2, default)


def _pick_power(C: np.ndarray, powers: tuple[int, ...], min_r2: float, default: int) -> int:
    for beta in powers:
        k = (C**beta).sum(axis=1, dtype=np.float64)  # diagonal is 0
        if _scale_free_r2(k) >= min_r2:
            return int(beta)
    return default


def _abs_cor_matrix(X: Expression) -> np.ndarray:
    """(G, G) float32 |cor| with a zero diagonal; G = 8,600 is 300 MB."""
    C = _abs(correlations(X, dtype=np.float32))
    np.fill_diagonal(C, 0.0)
    return C


def wgcna_scores(
    X: Expression, genes, regulators, *, power: int | Literal["auto"] = 6
) -> np.ndarray:
    """Unsigned topological overlap (TOM) between each regulator and each gene.

    Adjacency ``a_ij = |cor_ij|^β`` with a zero diagonal, connectivity ``k_i = Σ_u a_iu``,
    and ``TOM_ij = (Σ_u a_iu a_uj + a_ij) / (min(k_i, k_j) + 1 − a_ij)`` (the zero diagonal
    keeps u ≠ i, j). TOM is symmetric; the regulator rows are kept. ``TOM_ii = 1``.

    Parameters
    ----------
    power
        Soft-threshold β, or ``"auto"`` for :func:`soft_threshold_power` (falls back to 6).

    Notes
    -----
    Builds the (G, G) float32 adjacency (G = 8,600: 300 MB) and one (R, G) product; no
    (G, G) TOM is formed.
    """
    reg_idx = regulator_columns(X, genes, regulators)
    if power != "auto" and (isinstance(power, str) or power < 1):
        raise ValueError(f"`power` must be a positive number or 'auto', got {power!r}")
    A = _abs_cor_matrix(X)
    if power == "auto":
        power = _pick_power(A, WGCNA_POWERS, WGCNA_MIN_R2, WGCNA_DEFAULT_POWER)
    np.power(A, power, out=A)  # (G, G) adjacency
    k = A.sum(axis=1, dtype=np.float64).astype(np.float32)  # (G,)
    A_reg = A[reg_idx]  # (R, G)
    shared = A_reg @ A  # (R, G): Σ_u a_ru a_uj
    tom = (shared + A_reg) / (np.minimum(k[reg_idx, None], k[None, :]) + 1.0 - A_reg)
    tom[np.arange(len(reg_idx)), reg_idx] = 1.0
    return tom.astype(np.float64)


# ---------------------------------------------------------------------------------------
# Degree baselines
# ---------------------------------------------------------------------------------------
def degree_baselines(space: EdgeSpace) -> dict[str, np.ndarray]:
    """Training-prior popularity scores, each (R, G) float.

    - ``degree_tf_out``: the regulator's training out-degree, constant along its row.
    - ``degree_target_in``: the target's training in-degree, constant down its column.
    - ``degree_product``: ``(out + 1) * (in + 1)``, add-one smoothed: without it every target
      unseen in training scores 0 whatever its regulator, and the product ranks below its own
      out-degree factor (BMMC random split: 0.654 vs 0.837 AUROC; smoothed 0.866).

    Ties are left as ties (the metrics handle them). On a TF-held-out split every held-out
    regulator has training out-degree 0, so ``degree_tf_out`` carries no information for exactly
    the regulators being evaluated, and ``degree_product`` reduces to the target's in-degree.
    """
    out_deg, in_deg = space.training_degrees()  # (R,), (G,)
    R, G = space.shape
    tf_out = np.broadcast_to(out_deg[:, None].astype(np.float64), (R, G)).copy()
    target_in = np.broadcast_to(in_deg[None, :].astype(np.float64), (R, G)).copy()
    return {
        "degree_tf_out": tf_out,
        "degree_target_in": target_in,
        "degree_product": (tf_out + 1) * (target_in + 1),
    }


# ---------------------------------------------------------------------------------------
# External GRNs
# ---------------------------------------------------------------------------------------
def import_external_grn(
    path_or_frame: str | os.PathLike | pd.DataFrame,
    space: EdgeSpace,
    *,
    source_col: str = "source",
    target_col: str = "target",
    score_col: str = "score",
) -> np.ndarray:
    """Map a GRN table (one row per regulator → target edge) onto the edge space.

    Rows whose source is not a regulator of `space`, whose target is not one of its genes,
    or whose score is not finite are dropped; a pair listed more than once keeps its
    maximum score; pairs the table does not list get the lowest mapped score − 1, below
    every listed pair.

    Parameters
    ----------
    path_or_frame
        A ``.csv`` / ``.tsv`` / ``.txt`` (optionally gzipped) or ``.parquet`` file, or a
        DataFrame. For SCENIC+ eRegulon tables pass e.g. ``source_col="TF",
        target_col="Gene", score_col="importance_TF2G"``; for CellOracle links
        ``score_col="coef_abs"``.

    Returns
    -------
    (R, G) float64.

    Raises
    ------
    ValueError
        When a column is missing or no row falls in the space; the message names the file.
    """
    name = "<DataFrame>" if isinstance(path_or_frame, pd.DataFrame) else str(path_or_frame)
    table = path_or_frame if isinstance(path_or_frame, pd.DataFrame) else read_edge_table(path_or_frame)
    missing = [c for c in (source_col, target_col, score_col) if c not in table.columns]
    if missing:
        raise ValueError(
            f"GRN table {name} has no column(s) {missing}; found {list(table.columns)}. "
            "Name them with source_col, target_col, score_col (in Dagster: fields of the external_grns entry)."
        )
    r = pd.Index(space.regulators).get_indexer(table[source_col].astype(str))
    g = pd.Index(space.genes).get_indexer(table[target_col].astype(str))
    score = pd.to_numeric(table[score_col], errors="coerce").to_numpy(np.float64)
    keep = (r >= 0) & (g >= 0) & np.isfinite(score)
    if not keep.any():
        raise ValueError(
            f"GRN table {name}: none of its {len(table)} rows falls in the edge space "
            f"({int((r >= 0).sum())} sources are among the {len(space.regulators)} regulators, "
            f"{int((g >= 0).sum())} targets among the {len(space.genes)} genes, "
            f"{int(np.isfinite(score).sum())} scores finite; 0 matched). Check the gene naming "
            "(symbols vs Ensembl IDs) and the column names."
        )
    scores = np.full(space.shape, -np.inf)
    np.maximum.at(scores, (r[keep], g[keep]), score[keep])  # duplicated pairs -> max
    unlisted = np.isneginf(scores)
    scores[unlisted] = scores[~unlisted].min() - 1.0
    return scores


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "pearson": pearson_scores,
    "spearman": spearman_scores,
    "wgcna": wgcna_scores,
    "grnboost2": grnboost2_scores,
}
"""Expression baselines by method name: ``fn(X, genes, regulators, **kwargs) -> (R, G)``."""


def expression_baselines(names, X: Expression, genes, regulators, *, seed: int = 0, log=None,
                         grnboost2_max_cells: int | None = None) -> dict[str, np.ndarray]:
    """float32 (R, G) scores of each named baseline; `seed`, `log` (progress lines) and
    `grnboost2_max_cells` (its cell budget) go to GRNBoost2."""
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES)}")
    grnboost2 = {"seed": seed, "log": log, "max_cells": grnboost2_max_cells}
    return {name: BASELINES[name](X, genes, regulators, **(grnboost2 if name == "grnboost2" else {}))
            .astype(np.float32) for name in names}
