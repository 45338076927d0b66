"""QC and normalization of paired RNA + ATAC, sparse throughout."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from multiome_assets.dataset import DatasetError, QCConfig
from multiome_assets.readers import Multiome

TARGET_SUM = 1e4


def looks_like_counts(X: sp.csr_matrix) -> bool:
    """Raw counts are non-negative integers; normalized values are not."""
    return bool(X.nnz) and bool(np.all(X.data == np.round(X.data)))


def preprocess(mo: Multiome, qc: QCConfig, rna_values: str = "auto", source: str = "dataset") -> tuple[Multiome, dict]:
    """Filter features and cells (Cisformer-style thresholds), normalize RNA once, binarize ATAC.

    RNA: if raw counts are available (declared, detected in X, or in ``layers['counts']``),
    ``layers['counts']`` keeps them and X becomes log1p(counts / library size * 1e4). Input
    declared or detected as already normalized is left as it is (never normalized twice).
    ATAC: X becomes 0/1 accessibility.
    Returns the new Multiome and a dict of what QC removed.
    """
    rna, atac = mo.rna, mo.atac
    has_rna, has_atac = "rna" in mo.modalities, "atac" in mo.modalities
    counts = _raw_counts(rna, rna_values, source) if has_rna else None

    gene_cells = np.diff((rna.X > 0).tocsc().indptr)
    peak_cells = np.diff((atac.X > 0).tocsc().indptr)
    keep_genes = gene_cells >= qc.min_cells_per_gene
    keep_peaks = peak_cells >= qc.min_cells_per_peak
    rna_x, atac_x = rna.X[:, keep_genes], atac.X[:, keep_peaks]
    n_genes = np.diff(rna_x.indptr)
    n_peaks = np.diff(atac_x.indptr)
    keep_cells = np.ones(mo.n_cells, dtype=bool)
    if has_rna:  # a single-modality dataset is filtered on the modality it has
        keep_cells &= (n_genes >= qc.min_genes_per_cell) & (n_genes <= qc.max_genes_per_cell)
    if has_atac:
        keep_cells &= (n_peaks >= qc.min_peaks_per_cell) & (n_peaks <= qc.max_peaks_per_cell)
    if keep_cells.sum() == 0 or (has_rna and keep_genes.sum() == 0) or (has_atac and keep_peaks.sum() == 0):
        raise DatasetError(
            f"{source}: QC left {int(keep_cells.sum())} cells, {int(keep_genes.sum())} genes, "
            f"{int(keep_peaks.sum())} peaks; relax the thresholds in the dataset.yaml `qc:` block ({qc})"
        )
    rna = rna[keep_cells, keep_genes].copy()
    atac = atac[keep_cells, keep_peaks].copy()
    if counts is not None:
        counts = counts[keep_cells][:, keep_genes]
        rna.layers["counts"] = counts
        rna.X = log_normalize(counts)
    rna.uns["rna_values"] = "raw_counts" if counts is not None else "normalized" if has_rna else "absent"
    atac.X = (atac.X > 0).astype(np.float32)
    for layer in list(atac.layers):
        del atac.layers[layer]
    report = {
        "cells_in": int(mo.n_cells),
        "cells_kept": int(keep_cells.sum()),
        "genes_in": int(len(keep_genes)),
        "genes_kept": int(keep_genes.sum()),
        "peaks_in": int(len(keep_peaks)),
        "peaks_kept": int(keep_peaks.sum()),
        "rna_values": rna.uns["rna_values"],
    }
    return Multiome(rna, atac), report


def log_normalize(counts: sp.csr_matrix, target_sum: float = TARGET_SUM) -> sp.csr_matrix:
    """log1p(counts / library size * target_sum), cells with no counts stay zero."""
    lib = np.asarray(counts.sum(axis=1)).ravel()
    scale = np.divide(target_sum, lib, out=np.zeros_like(lib, dtype=np.float64), where=lib > 0)
    out = sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float32)
    out.data = np.log1p(out.data)
    return out


def _raw_counts(rna, rna_values: str, source: str) -> sp.csr_matrix | None:
    if "counts" in rna.layers:
        counts = rna.layers["counts"]
        if counts.nnz == 0:
            raise DatasetError(f"{source}: layers['counts'] is all zero, no cell has any count; it must be raw counts")
        if not looks_like_counts(counts):
            raise DatasetError(f"{source}: layers['counts'] holds non-integer values; it must be raw counts")
        return counts
    if rna_values == "raw_counts":
        if not looks_like_counts(rna.X):
            raise DatasetError(f"{source}: rna_values is raw_counts but X holds non-integer values")
        return rna.X
    if rna_values == "auto" and looks_like_counts(rna.X):
        return rna.X
    return None


def nb_targets(rna: sp.csr_matrix, counts: sp.csr_matrix | None = None) -> tuple[sp.csr_matrix, str]:
    """Integer targets (cells x genes) for a negative-binomial loss, and how they were obtained.

    Where they come from:

    - ``counts`` given (``layers['counts']``): the raw counts.
    - model input already integral: it is the raw counts.
    - model input equal to ``log1p(counts)`` or ``log2(1 + counts)`` (the bundled SNARE-seq matrix
      is the latter): the counts are recovered exactly by inverting the transform.
    - otherwise (``log1p`` of library-normalized values): ``round(expm1(x))``, pseudo-counts on the
      normalized scale. The NB then models normalized expression with integer support; the
      per-cell size factor in the decoder absorbs the scale. Documented, not hidden: the
      checkpoint records which target was used (``"nb_target"``).
    """
    if counts is not None:
        counts = sp.csr_matrix(counts, dtype=np.float32)
        if counts.shape != rna.shape:
            raise ValueError(f"counts has shape {counts.shape}, rna has {rna.shape}; they must match")
        return counts, "counts"
    x = sp.csr_matrix(rna, dtype=np.float64)
    for name, inverse in (("counts", lambda v: v), ("expm1", np.expm1), ("exp2m1", lambda v: np.exp2(v) - 1)):
        y = inverse(x.data)
        if np.all(y >= 0) and np.all(np.abs(y - np.round(y)) <= 1e-3 * np.maximum(1.0, y)):
            break
    else:
        name, y = "round_expm1", np.expm1(x.data)
    out = sp.csr_matrix((np.round(y).astype(np.float32), x.indices, x.indptr), shape=x.shape)
    out.eliminate_zeros()
    return out, name
