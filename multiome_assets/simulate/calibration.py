"""The simulator's calibration: statistics of the bundled real datasets, and the table that
compares a simulated dataset with them.

Calibration (:func:`measure_calibration`) reads two bundled datasets:

- RNA from ``bmmc_starter`` (it has raw counts in ``layers['counts']``): UMI per cell, detected
  genes per cell, each gene's share of the library (which sets its detection rate), the values of
  the nonzero counts, and one NB dispersion fitted to the genes' detection rates. Its genes are a
  600-gene panel, so the simulated RNA is as dense as that panel (25% of genes per cell), denser
  than a whole transcriptome.
- ATAC from ``snareseq_hesc`` (36,954 genome-wide peaks, binary): open peaks per cell, each peak's
  detection rate, peak widths, and the gap between consecutive peaks of a chromosome.

Counts per cell grow with the number of features: the simulator keeps UMI per cell *per gene*
and open peaks per cell *per peak* (and every per-feature rate) as in the reference, so the
comparison table (:func:`calibration_table`) states extensive statistics per 1,000 features.
Peak gaps are drawn from SNARE-seq's and shrunk by ``36,954 / n_peaks`` when there are more peaks
(the genome does not grow): the table compares gaps at the reference's density.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.dataset import load_spec
from multiome_assets.readers import read_dataset

RNA_REFERENCE, ATAC_REFERENCE = "bmmc_starter", "snareseq_hesc"
COUNT_HISTOGRAM_CAP = 1_000  # nonzero counts above this are counted as this for the quantiles
QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class Calibration:
    """Empirical distributions of the reference datasets (see the module's "Calibrated simulator")."""

    n_genes: int  # genes of the RNA reference
    n_peaks: int  # peaks of the ATAC reference
    umi_per_cell: np.ndarray  # (cells,) RNA reference
    gene_share: np.ndarray  # (genes,) each gene's mean count / mean UMI per cell
    dispersion: float  # NB theta that best gives the genes' detection rates
    open_peaks_per_cell: np.ndarray  # (cells,) ATAC reference
    peak_detection: np.ndarray  # (peaks,)
    peak_width: np.ndarray  # (peaks,) bp
    peak_gap: np.ndarray  # (consecutive pairs,) bp from one peak's end to the next one's start
    statistics: dict  # name -> values, the reference side of the comparison table


def measure_calibration(root: Path | None = None) -> Calibration:
    """The calibration statistics of ``bmmc_starter`` (RNA) and ``snareseq_hesc`` (ATAC) under ``root``
    (default: the project's data dir)."""
    rna = read_dataset(load_spec(RNA_REFERENCE, root)).rna
    atac = read_dataset(load_spec(ATAC_REFERENCE, root)).atac
    counts = rna.layers["counts"]
    peaks = atac.var[["Chromosome", "Start", "End"]]
    umi = np.asarray(counts.sum(1)).ravel()
    share = np.asarray(counts.mean(0)).ravel() / umi.mean()
    detection = np.diff(counts.tocsc().indptr) / counts.shape[0]
    stats = Statistics(counts.shape[1], atac.n_vars)
    stats.add(counts, atac.X)
    return Calibration(
        n_genes=counts.shape[1], n_peaks=atac.n_vars, umi_per_cell=umi, gene_share=share[share > 0],
        dispersion=_fit_dispersion(umi, share, detection),
        open_peaks_per_cell=np.diff(atac.X.indptr).astype(np.float64),
        peak_detection=np.diff(atac.X.tocsc().indptr) / atac.n_obs,
        peak_width=(peaks.End - peaks.Start).to_numpy(), peak_gap=peak_gaps(peaks),
        statistics=stats.result(peak_width=(peaks.End - peaks.Start).to_numpy(), peak_gap=peak_gaps(peaks)),
    )


def peak_gaps(peaks: pd.DataFrame) -> np.ndarray:
    """bp between consecutive peaks of each chromosome (end of one to start of the next)."""
    p = peaks.sort_values(["Chromosome", "Start"])
    same = p.Chromosome.to_numpy()[1:] == p.Chromosome.to_numpy()[:-1]
    return (p.Start.to_numpy()[1:] - p.End.to_numpy()[:-1])[same]


def _fit_dispersion(umi: np.ndarray, share: np.ndarray, detection: np.ndarray) -> float:
    """The NB theta whose expected detection rates, mean over cells of 1 - (1 + mu/theta)^-theta
    with mu = UMI x share, are closest to the observed ones (least squares over genes)."""
    thetas = np.logspace(-1, 1.5, 26)
    mu = umi[:, None] * share[None, :]
    err = [((1 - (1 + mu / t) ** -t).mean(0) - detection) ** 2 for t in thetas]  # 26 thetas, not genes
    return float(thetas[int(np.argmin(np.sum(err, axis=1)))])


class Statistics:
    """The compared statistics, accumulated over chunks of cells (never the whole matrix)."""

    def __init__(self, n_genes: int, n_peaks: int):
        self.n_genes, self.n_peaks = n_genes, n_peaks
        self.umi, self.genes, self.open = [], [], []
        self.gene_cells = np.zeros(n_genes, dtype=np.int64)
        self.peak_cells = np.zeros(n_peaks, dtype=np.int64)
        self.count_histogram = np.zeros(COUNT_HISTOGRAM_CAP + 1, dtype=np.int64)

    def add(self, counts: sp.csr_matrix, atac: sp.csr_matrix) -> None:
        self.umi.append(np.asarray(counts.sum(1)).ravel())
        self.genes.append(np.diff(counts.indptr))
        self.open.append(np.diff(atac.indptr))
        self.gene_cells += np.bincount(counts.indices, minlength=self.n_genes)
        self.peak_cells += np.bincount(atac.indices, minlength=self.n_peaks)
        values = np.minimum(np.rint(counts.data), COUNT_HISTOGRAM_CAP).astype(np.int64)
        self.count_histogram += np.bincount(values, minlength=COUNT_HISTOGRAM_CAP + 1)

    def result(self, peak_width: np.ndarray, peak_gap: np.ndarray) -> dict:
        n_cells = sum(map(len, self.umi))
        return {
            "rna_umi_per_cell_per_1k_genes": np.concatenate(self.umi) * 1000 / self.n_genes,
            "rna_genes_per_cell_fraction": np.concatenate(self.genes) / self.n_genes,
            "gene_detection_rate": self.gene_cells / n_cells,
            "rna_nonzero_count": self.count_histogram,  # a histogram: value -> how many entries
            "atac_open_peaks_per_cell_per_1k_peaks": np.concatenate(self.open) * 1000 / self.n_peaks,
            "peak_detection_rate": self.peak_cells / n_cells,
            "peak_width_bp": np.asarray(peak_width, dtype=np.float64),
            "peak_gap_bp_at_reference_density": np.asarray(peak_gap, dtype=np.float64),
        }


def _quantiles(values: np.ndarray, histogram: bool) -> np.ndarray:
    if not histogram:
        return np.quantile(values, QUANTILES)
    cumulative = np.cumsum(values) / values.sum()
    return np.searchsorted(cumulative, QUANTILES).astype(np.float64)


def calibration_table(real: dict, simulated: dict) -> pd.DataFrame:
    """One row per statistic: its reference dataset, 10%/50%/90% quantiles of the real and the
    simulated values, and the ratio of the medians (simulated / real)."""
    rows = []
    for name, values in real.items():
        hist = name == "rna_nonzero_count"
        r, s = _quantiles(values, hist), _quantiles(simulated[name], hist)
        rows.append({"statistic": name, "reference": RNA_REFERENCE if name.startswith(("rna", "gene")) else ATAC_REFERENCE,
                     "real_q10": r[0], "real_median": r[1], "real_q90": r[2],
                     "sim_q10": s[0], "sim_median": s[1], "sim_q90": s[2],
                     "median_ratio": s[1] / r[1] if r[1] else np.nan})
    return pd.DataFrame(rows)
