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
- :func:`grnboost2_scores`: GRNBoost2 (Moerman et al. 2019) per-target gradient boosting
  with arboreto's settings; see its docstring for the early-stopping fix.
- :func:`degree_baselines`: training-prior popularity, the bar a GRN method has to clear.
- :func:`import_external_grn`: a GRN table from another tool (SCENIC+, CellOracle, ...).
"""
from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.metrics import training_degrees

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

Expression = np.ndarray | sp.spmatrix | sp.sparray


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------
def _dense_expression(X: Expression, genes, regulators) -> tuple[np.ndarray, np.ndarray]:
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
    return _dense(X, len(genes)), reg_idx


def _dense(X: Expression, n_genes: int) -> np.ndarray:
    if X.ndim != 2 or X.shape[1] != n_genes:
        raise ValueError(f"X has shape {X.shape}; expected (cells, {n_genes}) to match `genes`")
    Xd = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
    if not np.isfinite(Xd).all():
        raise ValueError(f"X has {int((~np.isfinite(Xd)).sum())} non-finite values")
    return Xd


def _standardize(Xd: np.ndarray) -> np.ndarray:
    """(cells, G) columns centred and scaled to unit population variance; constant columns -> 0."""
    Z = Xd - Xd.mean(axis=0)
    sd = np.sqrt((Z * Z).mean(axis=0))  # (G,)
    nonconstant = sd > 1e-12 * np.maximum(1.0, np.abs(Xd).max(axis=0))
    Z[:, nonconstant] /= sd[nonconstant]
    Z[:, ~nonconstant] = 0.0  # zero-variance gene: correlation 0, not NaN
    return Z


def _abs_correlation(Xd: np.ndarray, reg_idx: np.ndarray) -> np.ndarray:
    Z = _standardize(Xd)  # (cells, G)
    cor = Z[:, reg_idx].T @ Z / Z.shape[0]  # (R, cells) @ (cells, G) -> (R, G)
    return np.minimum(np.abs(cor), 1.0)


# ---------------------------------------------------------------------------------------
# Correlation
# ---------------------------------------------------------------------------------------
def pearson_scores(X: Expression, genes, regulators) -> np.ndarray:
    """Absolute Pearson correlation of each regulator with each gene.

    The absolute value is taken because a prior edge may be activating or repressing; the
    sign is not evaluated. Genes with zero variance score 0. ``X`` is densified as float64
    (cells × G × 8 bytes).

    Returns
    -------
    (R, G) float64 in [0, 1].
    """
    Xd, reg_idx = _dense_expression(X, genes, regulators)
    return _abs_correlation(Xd, reg_idx)


def spearman_scores(X: Expression, genes, regulators) -> np.ndarray:
    """Absolute Spearman correlation: Pearson on per-gene ranks (ties get average ranks).

    Same conventions as :func:`pearson_scores`. On sparse data most ties are the zeros,
    which share one average rank.
    """
    Xd, reg_idx = _dense_expression(X, genes, regulators)
    return _abs_correlation(rankdata(Xd, axis=0, method="average"), reg_idx)


# ---------------------------------------------------------------------------------------
# WGCNA topological overlap
# ---------------------------------------------------------------------------------------
WGCNA_POWERS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20)  # pickSoftThreshold's default


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
    min_r2: float = 0.8,
    default: int = 6,
) -> int:
    """Lowest β whose connectivity fits a scale-free law with signed R² ≥ `min_r2`.

    WGCNA ``pickSoftThreshold`` (unsigned network, connectivity excludes the gene itself);
    returns `default` when no power reaches `min_r2`, which is common on small, sparse
    single-cell data.
    """
    C = _abs_cor_matrix(_dense(X, len(genes)))  # (G, G) float32
    for beta in powers:
        k = (C**beta).sum(axis=1, dtype=np.float64)  # diagonal is 0
        if _scale_free_r2(k) >= min_r2:
            return int(beta)
    return default


def _abs_cor_matrix(Xd: np.ndarray) -> np.ndarray:
    """(G, G) float32 |cor| with a zero diagonal; G = 8,600 is 300 MB."""
    Z = _standardize(Xd).astype(np.float32)
    C = Z.T @ Z  # (G, G)
    C /= Z.shape[0]
    np.abs(C, out=C)
    np.minimum(C, 1.0, out=C)
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
    Xd, reg_idx = _dense_expression(X, genes, regulators)
    if power == "auto":
        power = soft_threshold_power(Xd, genes)
    if isinstance(power, str) or power < 1:
        raise ValueError(f"`power` must be a positive number or 'auto', got {power!r}")
    A = _abs_cor_matrix(Xd)
    np.power(A, power, out=A)  # (G, G) adjacency
    k = A.sum(axis=1, dtype=np.float64).astype(np.float32)  # (G,)
    A_reg = A[reg_idx]  # (R, G)
    shared = A_reg @ A  # (R, G): Σ_u a_ru a_uj
    tom = (shared + A_reg) / (np.minimum(k[reg_idx, None], k[None, :]) + 1.0 - A_reg)
    tom[np.arange(len(reg_idx)), reg_idx] = 1.0
    return tom.astype(np.float64)


# ---------------------------------------------------------------------------------------
# GRNBoost2
# ---------------------------------------------------------------------------------------
class _SameSampleOOBMonitor:
    """arboreto's early stopping on the OOB improvement measured on one OOB sample.

    arboreto's ``EarlyStopMonitor`` stops when the mean of ``oob_improvement_`` over the
    last `window` rounds is negative. Since scikit-learn 1.3 (PR #24882) that attribute is
    the difference of OOB losses on two *different* random OOB subsets (10 % of the cells
    each), which is noise around zero, so boosting stops after ~25-30 rounds whatever the
    signal. Here the improvement of round i is ``loss(before) − loss(after)`` on round i's
    own OOB cells, the quantity arboreto was written against.
    """

    def __init__(self, window: int):
        self.window = window
        self.improvement: list[float] = []
        self.previous: np.ndarray | None = None

    def __call__(self, i: int, regressor, env: dict) -> bool:
        # `env` is the locals() of sklearn's private GradientBoosting._fit_stages
        if not {"y", "sample_mask", "raw_predictions"} <= env.keys():
            raise RuntimeError(
                "this scikit-learn no longer exposes y / sample_mask / raw_predictions to "
                "fit monitors; use early_stopping='arboreto'"
            )
        y, oob = env["y"], ~env["sample_mask"]
        now = env["raw_predictions"][:, 0]  # (cells,) after round i
        if self.previous is None:  # round 0: sklearn already measures on one sample
            self.improvement.append(float(regressor.oob_improvement_[0]))
        else:
            before, after = y[oob] - self.previous[oob], y[oob] - now[oob]
            self.improvement.append(float(before @ before - after @ after) / oob.sum())
        self.previous = now.copy()
        return i >= self.window - 1 and np.mean(self.improvement[-self.window :]) < 0


_REGULATOR_MATRIX: np.ndarray | None = None  # (cells, R), set once per worker process


def _set_regulator_matrix(tf_matrix: np.ndarray) -> None:
    global _REGULATOR_MATRIX
    _REGULATOR_MATRIX = tf_matrix


def _init_worker(tf_matrix: np.ndarray, parent_pid: int) -> None:
    """Pool worker start: die with the process that spawned it, then keep the regulator matrix.

    A killed run (SIGKILL: a terminated Dagster run, an out-of-memory kill) gives its pool no
    chance to shut down; without this its workers go on fitting their chunk of targets."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent_pid:  # the parent died before the line above
            os._exit(1)
    _set_regulator_matrix(tf_matrix)


def _fit_targets(
    target_expr: np.ndarray, self_col: np.ndarray, seed: int, early_stopping: str
) -> np.ndarray:
    """Importances (R, t) of all regulators for t targets; a regulator never explains itself."""
    from arboreto.core import EARLY_STOP_WINDOW_LENGTH, SGBM_KWARGS, EarlyStopMonitor
    from sklearn.ensemble import GradientBoostingRegressor

    tf_matrix = _REGULATOR_MATRIX
    n_reg = tf_matrix.shape[1]
    out = np.zeros((n_reg, target_expr.shape[1]))
    for t in range(target_expr.shape[1]):  # one regression per target, as GRNBoost2
        if np.ptp(target_expr[:, t]) == 0:
            continue  # constant target: every importance is 0, no need to boost 5000 rounds
        keep = np.arange(n_reg) != self_col[t]  # arboreto.core.clean
        monitor = (
            EarlyStopMonitor(EARLY_STOP_WINDOW_LENGTH)
            if early_stopping == "arboreto"
            else _SameSampleOOBMonitor(EARLY_STOP_WINDOW_LENGTH)
        )
        model = GradientBoostingRegressor(random_state=seed, **SGBM_KWARGS)
        model.fit(tf_matrix[:, keep], target_expr[:, t], monitor=monitor)
        # arboreto.core.to_feature_importances: undo sklearn's division by the tree count
        out[keep, t] = model.feature_importances_ * len(model.estimators_)
    return out


def grnboost2_scores(
    X: Expression,
    genes,
    regulators,
    *,
    seed: int = 0,
    n_workers: int = 2,
    max_targets: int | None = None,
    early_stopping: Literal["same_sample_oob", "arboreto"] = "same_sample_oob",
) -> np.ndarray:
    """GRNBoost2 importances: one gradient-boosting regression per target on all regulators.

    Settings are arboreto's own (``arboreto.core.SGBM_KWARGS``: ``learning_rate=0.01``,
    ``n_estimators=5000``, ``max_features=0.1``, ``subsample=0.9``; early-stopping window
    25; importance = ``feature_importances_ × n_trees``), with one seed for every target as
    ``arboreto.algo.grnboost2``. A target that is itself a regulator is regressed on the
    other regulators (its own score is 0). Targets are split over `n_workers` processes.

    ``arboreto.algo.grnboost2`` fails with the current dask ("Must supply at least one
    delayed object"), so the per-target routine is run here; with
    ``early_stopping="arboreto"`` it is exactly ``arboreto.core.infer_partial_network``.

    Parameters
    ----------
    seed
        ``random_state`` of every regression.
    n_workers
        Processes (spawned); 1 runs in this process.
    max_targets
        Fit only the `max_targets` most variable genes; the other columns are ``-inf``
        (no score), which the metrics rank last.
    early_stopping
        - ``"same_sample_oob"``: arboreto's rule on the OOB improvement of each round
          measured on that round's OOB cells (see :class:`_SameSampleOOBMonitor`).
        - ``"arboreto"``: arboreto's ``EarlyStopMonitor`` as installed; with
          scikit-learn ≥ 1.3 it stops after ~25-30 trees for every target.

    Notes
    -----
    Workers are spawned, so a script calling this with ``n_workers > 1`` needs the usual
    ``if __name__ == "__main__":`` guard (Dagster, pytest and notebooks need nothing).

    Measured on SNARE-seq hESC (385 cells, all 8,595 genes as targets, 516 Lambert TFs),
    ``n_workers=2``: ``"same_sample_oob"`` 415 CPU-seconds (~3.5 min on two free cores;
    16 min wall on cores shared at load 5-12), trees per target median 25, mean 32, max
    216 (most genes are detected in < 5 % of cells, so the OOB loss stops improving at
    once); ``"arboreto"`` 274 CPU-seconds (~2.3 min; 6 min shared), median 26, max 47.
    Use `max_targets` when a dataset is larger.
    """
    if early_stopping not in ("same_sample_oob", "arboreto"):
        raise ValueError(f"`early_stopping` must be 'same_sample_oob' or 'arboreto', got {early_stopping!r}")
    if n_workers < 1:
        raise ValueError(f"`n_workers` must be >= 1, got {n_workers}")
    Xd, reg_idx = _dense_expression(X, genes, regulators)
    n_genes = Xd.shape[1]
    targets = np.arange(n_genes)
    if max_targets is not None and max_targets < n_genes:
        targets = np.sort(np.argsort(-Xd.var(axis=0), kind="stable")[:max_targets])
    col_of_reg = np.full(n_genes, -1)
    col_of_reg[reg_idx] = np.arange(len(reg_idx))
    tf_matrix = np.ascontiguousarray(Xd[:, reg_idx])  # (cells, R)

    chunks = [c for c in np.array_split(targets, min(len(targets), 8 * n_workers)) if len(c)]
    jobs = [(Xd[:, c], col_of_reg[c], seed, early_stopping) for c in chunks]
    if n_workers == 1:
        _set_regulator_matrix(tf_matrix)
        try:
            blocks = [_fit_targets(*job) for job in jobs]
        finally:
            _set_regulator_matrix(None)
    else:
        with ProcessPoolExecutor(
            n_workers, mp_context=get_context("spawn"),
            initializer=_init_worker, initargs=(tf_matrix, os.getpid()),
        ) as pool:
            blocks = list(pool.map(_fit_targets, *zip(*jobs)))

    scores = np.full((len(reg_idx), n_genes), -np.inf)
    scores[:, np.concatenate(chunks)] = np.concatenate(blocks, axis=1)
    return scores


# ---------------------------------------------------------------------------------------
# Degree baselines
# ---------------------------------------------------------------------------------------
def degree_baselines(space: EdgeSpace) -> dict[str, np.ndarray]:
    """Training-prior popularity scores, each (R, G) float.

    - ``degree_tf_out``: the regulator's training out-degree, constant along its row.
    - ``degree_target_in``: the target's training in-degree, constant down its column.
    - ``degree_product``: their product.

    Ties are left as ties (the metrics handle them). On a TF-held-out split every held-out
    regulator has training out-degree 0, so ``degree_tf_out`` and ``degree_product`` carry
    no information for exactly the regulators being evaluated.
    """
    out_deg, in_deg = training_degrees(space)  # (R,), (G,)
    R, G = space.shape
    tf_out = np.broadcast_to(out_deg[:, None].astype(np.float64), (R, G)).copy()
    target_in = np.broadcast_to(in_deg[None, :].astype(np.float64), (R, G)).copy()
    return {
        "degree_tf_out": tf_out,
        "degree_target_in": target_in,
        "degree_product": tf_out * target_in,
    }


# ---------------------------------------------------------------------------------------
# External GRNs
# ---------------------------------------------------------------------------------------
def _read_grn_table(path: str | os.PathLike) -> pd.DataFrame:
    suffixes = "".join(Path(path).suffixes[-2:]).lower()
    if suffixes.endswith((".parquet", ".pq")):
        read = pd.read_parquet
    elif suffixes.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        read = partial(pd.read_csv, sep="\t")
    elif suffixes.endswith((".csv", ".csv.gz")):
        read = pd.read_csv
    else:
        raise ValueError(
            f"GRN table {path}: unknown file type {suffixes!r}; use .csv, .tsv, .txt (optionally .gz) or .parquet"
        )
    try:
        return read(path)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"GRN table {path}: cannot be read ({type(e).__name__}: {e})") from None


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
    table = path_or_frame if isinstance(path_or_frame, pd.DataFrame) else _read_grn_table(path_or_frame)
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


def expression_baselines(names, X: Expression, genes, regulators, *, seed: int = 0) -> dict[str, np.ndarray]:
    """float32 (R, G) scores of each named baseline; `seed` goes to the stochastic one (GRNBoost2)."""
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {sorted(BASELINES)}")
    return {name: BASELINES[name](X, genes, regulators, **({"seed": seed} if name == "grnboost2" else {}))
            .astype(np.float32) for name in names}
