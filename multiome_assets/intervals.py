"""Genomic intervals: candidate peaks near each gene's TSS, and peaks → the fixed cCRE vocabulary."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyranges as pr
import scipy.sparse as sp

from multiome_assets.dataset import DatasetError


def candidate_sets(genes: pd.DataFrame, peaks: pd.DataFrame, window: int, max_candidates: int = 50) -> pd.DataFrame:
    """For each gene, the peaks within ±`window` bp of its TSS, nearest first, at most `max_candidates`.

    genes: columns gene, chrom, tss (rows without a TSS are ignored).
    peaks: columns Chromosome, Start, End, in the dataset's peak order (its row number is the peak index).
    Returns columns gene, peak, peak_index, distance (bp from TSS to the nearest peak edge, 0 inside), rank (1 = nearest).
    """
    genes = genes.dropna(subset=["tss"])
    tss = genes["tss"].to_numpy(np.int64)
    windows = pr.PyRanges(
        pd.DataFrame(
            {
                "Chromosome": genes["chrom"].astype(str).to_numpy(),
                "Start": np.maximum(tss - window, 0),
                "End": tss + window + 1,
                "gene": genes["gene"].to_numpy(),
                "tss": tss,
            }
        )
    )
    peak_ranges = pr.PyRanges(
        pd.DataFrame(
            {
                "Chromosome": peaks["Chromosome"].astype(str).to_numpy(),
                "Start": peaks["Start"].to_numpy(np.int64),
                "End": peaks["End"].to_numpy(np.int64),
                "peak_index": np.arange(len(peaks)),
            }
        )
    )
    hits = windows.join(peak_ranges, suffix="_peak").df
    if hits.empty:
        return pd.DataFrame({"gene": [], "peak": [], "peak_index": [], "distance": [], "rank": []}).astype(
            {"gene": str, "peak": str, "peak_index": np.int64, "distance": np.int64, "rank": np.int64}
        )
    start, end, t = hits["Start_peak"].to_numpy(), hits["End_peak"].to_numpy(), hits["tss"].to_numpy()
    distance = np.where(t < start, start - t, np.where(t >= end, t - end + 1, 0))
    out = pd.DataFrame(
        {
            "gene": hits["gene"].astype(str).to_numpy(),
            "peak": peaks.index.to_numpy()[hits["peak_index"].to_numpy()].astype(str),
            "peak_index": hits["peak_index"].to_numpy(np.int64),
            "distance": distance.astype(np.int64),
        }
    )
    out = out.sort_values(["gene", "distance", "peak_index"], kind="stable")
    out["rank"] = out.groupby("gene", sort=False).cumcount() + 1
    return out[out["rank"] <= max_candidates].reset_index(drop=True)


def randomized_candidate_sets(candidates: pd.DataFrame, peak_names: pd.Index, seed: int = 0) -> pd.DataFrame:
    """Ablation: each gene keeps its number of candidates, but they are drawn uniformly from all peaks."""
    rng = np.random.default_rng(seed)
    out = candidates[["gene", "rank"]].copy()
    out["peak_index"] = rng.integers(0, len(peak_names), size=len(out))
    out = out.drop_duplicates(["gene", "peak_index"])
    out["peak"] = peak_names.to_numpy()[out["peak_index"].to_numpy()].astype(str)
    out["distance"] = pd.array([pd.NA] * len(out), dtype="Int64")
    out["rank"] = out.groupby("gene", sort=False).cumcount() + 1
    return out[["gene", "peak", "peak_index", "distance", "rank"]].reset_index(drop=True)


def candidate_matrix(candidates: pd.DataFrame, genes: pd.Index, max_candidates: int) -> np.ndarray:
    """(G, C) peak indices in rank order, -1 where a gene has fewer candidates: the model's input."""
    out = np.full((len(genes), max_candidates), -1, dtype=np.int64)
    row = genes.get_indexer(candidates["gene"])
    keep = (row >= 0) & (candidates["rank"].to_numpy() <= max_candidates)
    out[row[keep], candidates["rank"].to_numpy()[keep] - 1] = candidates["peak_index"].to_numpy()[keep]
    return out


def read_ccre_bed(path: Path) -> pd.DataFrame:
    """The fixed cCRE vocabulary (chrom, start, end); row number = vocabulary index. Parsed once per
    process and file version (a million rows: ~2 s), every asset that reads it gets its own copy."""
    try:
        stat = os.stat(path)
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read as a BED file ({e})") from None
    return _parsed_bed(str(path), stat.st_size, stat.st_mtime_ns).copy()


@functools.lru_cache(maxsize=2)
def _parsed_bed(path: str, size: int, mtime_ns: int) -> pd.DataFrame:
    try:
        bed = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1, 2], names=["Chromosome", "Start", "End"],
                          dtype={"Chromosome": str, "Start": np.int64, "End": np.int64})
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: cannot be read as a BED file ({e})") from None
    return bed


def peak_to_vocab(peaks: pd.DataFrame, vocab: pd.DataFrame) -> sp.csr_matrix:
    """(n_peaks, n_vocab) 0/1: vocabulary CRE j overlaps peak i by at least 1 bp."""
    p = pr.PyRanges(peaks[["Chromosome", "Start", "End"]].assign(pi=np.arange(len(peaks))).reset_index(drop=True))
    v = pr.PyRanges(vocab[["Chromosome", "Start", "End"]].assign(vi=np.arange(len(vocab))))
    hits = p.join(v, suffix="_v").df
    if hits.empty:  # pyranges gives no columns then (no peaks, or none overlapping)
        return sp.csr_matrix((len(peaks), len(vocab)), dtype=np.float32)
    data = np.ones(len(hits), dtype=np.float32)
    m = sp.csr_matrix((data, (hits["pi"].to_numpy(), hits["vi"].to_numpy())), shape=(len(peaks), len(vocab)))
    m.sum_duplicates()
    m.data[:] = 1
    return m


def binarize_to_vocab(atac: sp.csr_matrix, peak_vocab: sp.csr_matrix) -> sp.csr_matrix:
    """Cisformer's input: (cells, n_vocab) bool, a CRE is active if an accessible peak overlaps it."""
    active = (atac > 0).astype(np.float32) @ peak_vocab
    return (active > 0).astype(bool).tocsr()
