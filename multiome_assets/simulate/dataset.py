"""Calibrated simulator: a dataset folder of any size, written to disk in chunks of cells.

The calibration it draws from (the bundled datasets' statistics, and the comparison table) is
:mod:`multiome_assets.simulate.calibration`.

Generative story, per block of cells (every block is drawn from its own seeded stream, so a
dataset does not depend on how it is chunked):

1. Genes: ``n_genes`` annotated genes of hg38 (Ensembl 93, chr1-22 and X, protein-coding
   first); ``n_regulators`` of them are TFs of the Lambert 2018 list. Each gene's library share
   is drawn from BMMC's genes' shares.
2. Peaks: each gene gets a multinomial share of ``n_peaks``; a gene's peaks are laid out around
   its TSS with SNARE-seq widths and gaps; overlapping clusters are pushed apart so that
   consecutive peaks keep at least their drawn gap.
3. Network: targets (non-regulators with a peak within ``link_window`` of the TSS) get 1-3
   regulators, mostly of their module's latent program, signed weights (75% activating); each
   target has one enhancer, a peak within ``link_window`` of its TSS (the CRE -> gene link).
4. Cells: latent programs ``u`` (K), regulator activity ``x``, target drive ``d = x W``. Peaks open
   by ``k_n`` draws (SNARE-seq's open peaks per cell, rescaled) from the cell's peak weights
   ``q_p exp(u L + 1.5 d_enhancer)``. Gene ``g``'s mean is the cell's UMI (BMMC's, rescaled) times
   its share ``s_g exp(u M + x for regulators + amp (sigmoid(2 d) gate - 0.35) for targets)``,
   renormalized, where ``gate = 0.7 + 0.6 [enhancer open]`` (an enhancer is open in a few % of
   cells, so it boosts rather than gates); counts are NB (Gamma-Poisson).

Written files: ``rna.h5ad`` (X = raw counts, var ``gene_ids``, obs ``cell_type`` = the cell's
dominant program), ``atac.h5ad`` (binary), ``planted_edges.csv`` (source, target, weight: also
the dataset's prior), ``planted_links.csv`` (peak, gene, distance), ``calibration.csv`` and
``dataset.yaml``. X is written with h5py as anndata's on-disk CSR, one chunk of cells at a time.

    python -m multiome_assets.simulate.dataset --cells 50000 --genes 20000 --peaks 150000 --out DIR
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.annotation import read_annotation
from multiome_assets.dataset import reference_path
from multiome_assets.files import atomic_path
from multiome_assets.priors import read_tf_list
from multiome_assets.simulate.calibration import (
    Calibration,
    Statistics,
    calibration_table,
    measure_calibration,
    peak_gaps,
)

__all__ = ["SimulationModel", "plan_simulation", "simulate_cells", "simulate_dataset"]


MAIN_CHROMOSOMES = tuple(f"chr{c}" for c in [*range(1, 23), "X"])
BLOCK_ELEMENTS = 1_000_000  # dense cells x features elements per generated block


# ------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class SimulationModel:
    """Everything fixed before the cells are drawn: features, network, per-feature parameters."""

    n_cells: int
    genes: pd.DataFrame  # gene, gene_id, chrom, tss; in genome order
    peaks: pd.DataFrame  # Chromosome, Start, End, index = "chr:start-end"; in genome order
    regulators: np.ndarray  # (R,) gene columns
    program: np.ndarray  # (R,) latent program of each regulator
    targets: np.ndarray  # (T,) gene columns
    weights: sp.csc_matrix  # (R, T) planted weights, each target's column of unit norm
    amplitude: np.ndarray  # (T,) log-fold range of each target's response
    enhancer: np.ndarray  # (T,) peak column of each target's enhancer
    gene_log_share: np.ndarray  # (G,)
    gene_loading: np.ndarray  # (K, G)
    peak_log_weight: np.ndarray  # (P,)
    peak_loading: np.ndarray  # (K, P)
    edges: pd.DataFrame  # tf, target, weight
    links: pd.DataFrame  # peak, gene, distance (bp from the TSS to the peak's nearest edge)
    calibration: Calibration
    seed: int
    umi_median: float | None = None  # median UMI per cell; None: the reference's, scaled to the genes
    open_median: float | None = None  # median open peaks per cell; None: the reference's, scaled to the peaks

    @property
    def block_cells(self) -> int:
        """Cells per generated block: bounds the dense (block, features) arrays."""
        return int(np.clip(BLOCK_ELEMENTS // max(len(self.genes), len(self.peaks)), 8, 1024))

    @property
    def umi_scale(self) -> float:
        if self.umi_median is not None:
            return self.umi_median / float(np.median(self.calibration.umi_per_cell))
        return len(self.genes) / self.calibration.n_genes

    @property
    def open_scale(self) -> float:
        if self.open_median is not None:
            return self.open_median / float(np.median(self.calibration.open_peaks_per_cell))
        return len(self.peaks) / self.calibration.n_peaks

    @property
    def gap_scale(self) -> float:
        return min(1.0, self.calibration.n_peaks / len(self.peaks))


def plan_simulation(n_cells: int, n_genes: int, n_peaks: int, *, n_regulators: int | None = None,
                    n_latent: int = 8, target_fraction: float = 0.3, cross_program: float = 0.15,
                    link_window: int = 100_000, seed: int = 0, calibration: Calibration | None = None,
                    root: Path | None = None, umi_median: float | None = None,
                    open_median: float | None = None) -> SimulationModel:
    """Choose the genes, lay out the peaks, plant the network; ``n_regulators`` defaults to G/40
    (at least 5). ``root``: the data dir holding the references (default: the project's).

    Depth: by default a cell's UMI and open peaks are the references' scaled to the features (the
    BMMC panel's quarter of genes per cell, as dense at 36,600 genes). ``umi_median`` and
    ``open_median`` set a 10x run's depth instead: e.g. 5,000 UMI (~2,000 genes detected per cell
    at 36,600 genes) and 7,000 open peaks per cell."""
    if min(n_cells, n_genes, n_peaks) < 1:
        raise ValueError(f"sizes must be positive; got {n_cells} cells, {n_genes} genes, {n_peaks} peaks")
    calibration = calibration or measure_calibration(root)
    rng = np.random.default_rng([seed, 0])
    R = n_regulators if n_regulators is not None else max(5, n_genes // 40)
    genes = choose_genes(read_annotation(reference_path("hg38_ensembl93", root)),
                         read_tf_list(reference_path("lambert2018", root)), n_genes, R, rng)
    peaks, home = lay_out_peaks(genes, n_peaks, calibration, rng)
    regulators = np.flatnonzero(genes.pop("is_regulator").to_numpy())
    program = rng.integers(0, n_latent, size=R)
    lo, hi, start, end = _peaks_in_window(genes, peaks, link_window)
    eligible = np.flatnonzero((hi > lo) & ~np.isin(np.arange(n_genes), regulators))
    targets = np.sort(rng.choice(eligible, size=int(round(target_fraction * len(eligible))), replace=False))
    if len(targets) == 0:
        raise ValueError(f"no gene has a peak within {link_window} bp of its TSS to plant a target on; "
                         "use more peaks or a larger link_window")
    enhancer = lo[targets] + (rng.random(len(targets)) * (hi - lo)[targets]).astype(np.int64)
    weights, edges = _plant_edges(program, targets, n_latent, cross_program, rng)
    tss = genes.tss.to_numpy()[targets]
    distance = np.maximum(0, np.maximum(start[enhancer] - tss, tss - end[enhancer] + 1))
    names = genes.gene.to_numpy()
    return SimulationModel(
        n_cells=n_cells, genes=genes, peaks=peaks, regulators=regulators, program=program, targets=targets,
        weights=weights, amplitude=rng.uniform(1.5, 3.0, size=len(targets)), enhancer=enhancer,
        gene_log_share=np.log(rng.choice(calibration.gene_share, size=n_genes)) + rng.normal(0, 0.2, size=n_genes),
        gene_loading=rng.normal(0, 0.1, size=(n_latent, n_genes)),
        peak_log_weight=np.log(rng.choice(calibration.peak_detection, size=n_peaks)) + rng.normal(0, 0.2, size=n_peaks),
        peak_loading=rng.normal(0, 0.15, size=(n_latent, n_peaks)),
        edges=pd.DataFrame({"tf": names[regulators[edges[0]]], "target": names[targets[edges[1]]], "weight": edges[2]}),
        links=pd.DataFrame({"peak": peaks.index.to_numpy()[enhancer], "gene": names[targets], "distance": distance}),
        calibration=calibration, seed=seed, umi_median=umi_median, open_median=open_median,
    )


def choose_genes(annotation: pd.DataFrame, tfs: pd.Index, n_genes: int, n_regulators: int,
                 rng: np.random.Generator) -> pd.DataFrame:
    """``n_genes`` uniquely named genes of chr1-22/X (protein-coding first, then the others, at
    random), ``n_regulators`` of them TFs (column ``is_regulator``); in genome order."""
    genes = annotation[annotation.chrom.isin(MAIN_CHROMOSOMES)].drop_duplicates("gene_name").reset_index(drop=True)
    is_tf = genes.gene_name.isin(tfs).to_numpy() & (genes.gene_type == "protein_coding").to_numpy()
    if n_genes > len(genes) or not 0 < n_regulators <= min(is_tf.sum(), n_genes - 1):
        raise ValueError(f"{n_genes} genes with {n_regulators} regulators: the annotation has {len(genes)} genes on "
                         f"chr1-22/X and {int(is_tf.sum())} protein-coding TFs; regulators must be fewer than genes")
    regulators = rng.choice(np.flatnonzero(is_tf), size=n_regulators, replace=False)
    rest = np.setdiff1d(np.arange(len(genes)), regulators)
    coding = (genes.gene_type.to_numpy()[rest] == "protein_coding")
    order = np.lexsort((rng.random(len(rest)), ~coding))  # protein-coding first, random within
    chosen = genes.loc[np.concatenate([regulators, rest[order[: n_genes - n_regulators]]])]
    chosen = chosen.assign(is_regulator=np.arange(n_genes) < n_regulators,
                           chrom_order=chosen.chrom.map({c: i for i, c in enumerate(MAIN_CHROMOSOMES)}))
    chosen = chosen.sort_values(["chrom_order", "tss"], kind="stable")
    return pd.DataFrame({"gene": chosen.gene_name.to_numpy(), "gene_id": chosen.gene_id.to_numpy(),
                         "chrom": chosen.chrom.to_numpy(), "tss": chosen.tss.to_numpy(np.int64),
                         "is_regulator": chosen.is_regulator.to_numpy()})


def lay_out_peaks(genes: pd.DataFrame, n_peaks: int, calibration: Calibration,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Peaks in clusters around the genes' TSSs (a multinomial share of ``n_peaks`` per gene) with
    the reference's widths and gaps; consecutive peaks of a chromosome keep at least their drawn
    gap. Returns the peaks in genome order and each one's home gene (row of ``genes``)."""
    G = len(genes)
    per_gene = rng.multinomial(n_peaks, np.full(G, 1.0 / G))
    home = np.repeat(np.arange(G), per_gene)
    width = rng.choice(calibration.peak_width, size=n_peaks).astype(np.int64)
    gap = np.maximum(1, rng.choice(calibration.peak_gap, size=n_peaks) * min(1.0, calibration.n_peaks / n_peaks)).astype(np.int64)
    step = width + gap
    before = np.cumsum(step) - step  # steps before each peak, over all clusters
    first = np.cumsum(per_gene) - per_gene  # first peak of each gene's cluster
    span = np.add.reduceat(step, first[per_gene > 0]) if n_peaks else np.zeros(0)
    span_of = np.zeros(G, dtype=np.int64)
    span_of[per_gene > 0] = span
    start = genes.tss.to_numpy()[home] - span_of[home] // 2 + before - before[first[home]]
    chrom_code = pd.Index(MAIN_CHROMOSOMES).get_indexer(genes.chrom.to_numpy()[home])
    # genes are in genome order, so clusters are too: push overlapping ones apart, keeping that order,
    # so that s_i >= s_(i-1) + w_(i-1) + gap_i (one running max; the chromosome offset makes each
    # chromosome start afresh). Within a cluster the gaps are the drawn ones.
    offset = chrom_code.astype(np.int64) * 10**11
    need = np.cumsum(gap) + np.cumsum(width) - width
    start = np.maximum.accumulate(start + offset - need) + need - offset
    start -= np.minimum(0, pd.Series(start).groupby(chrom_code).transform("min").to_numpy())  # none before 0
    end = start + width
    chrom = np.asarray(MAIN_CHROMOSOMES, dtype=object)[chrom_code]
    names = pd.Index(pd.Series(chrom) + ":" + pd.Series(start).astype(str) + "-" + pd.Series(end).astype(str))
    return pd.DataFrame({"Chromosome": chrom, "Start": start, "End": end}, index=names), home


def _peaks_in_window(genes: pd.DataFrame, peaks: pd.DataFrame, window: int):
    """For each gene, the peak columns [lo, hi) within ``window`` bp of its TSS (peaks are in genome
    order, so they are contiguous), and the peaks' starts and ends."""
    code = {c: i for i, c in enumerate(MAIN_CHROMOSOMES)}
    base = 10**11
    p_chrom = peaks.Chromosome.map(code).to_numpy(np.int64) * base
    start, end = peaks.Start.to_numpy(np.int64), peaks.End.to_numpy(np.int64)
    g = genes.chrom.map(code).to_numpy(np.int64) * base + genes.tss.to_numpy(np.int64)
    lo = np.searchsorted(p_chrom + end, g - window, side="right")  # first peak ending after tss - window
    hi = np.searchsorted(p_chrom + start, g + window, side="right")  # peaks starting up to tss + window
    return lo, np.maximum(hi, lo), start, end


def _plant_edges(program: np.ndarray, targets: np.ndarray, n_latent: int, cross_program: float,
                 rng: np.random.Generator) -> tuple[sp.csc_matrix, tuple]:
    """1-3 distinct regulators per target, mostly of the target's module program; signed weights.
    Returns (R, T) weights with unit-norm columns and (regulator row, target row, weight) per edge."""
    R, T = len(program), len(targets)
    k = rng.integers(1, min(3, R) + 1, size=T)
    module = program[rng.integers(0, R, size=T)]
    p_cross = cross_program / ((1 - cross_program) * max(1, n_latent - 1))
    # per target: regulators of its module rank first, a few outside ones join them at random
    rank_key = rng.random((T, R)) - ((program[None, :] == module[:, None]) | (rng.random((T, R)) < p_cross))
    picks = np.argpartition(rank_key, min(3, R) - 1, axis=1)[:, :3] if R > 3 else np.argsort(rank_key, axis=1)[:, :3]
    t_idx, slot = np.nonzero(np.arange(picks.shape[1])[None, :] < k[:, None])
    reg = picks[t_idx, slot]
    w = np.where(rng.random(len(t_idx)) < 0.75, 1.0, -1.0) * rng.uniform(0.6, 1.2, size=len(t_idx))
    W = sp.csc_matrix((w, (reg, t_idx)), shape=(R, T))
    norms = np.sqrt(np.asarray(W.multiply(W).sum(0)).ravel())
    return sp.csc_matrix(W @ sp.diags(1.0 / norms)), (reg, t_idx, w)


# ------------------------------------------------------------------------- the cells


def simulate_cells(model: SimulationModel, start: int, stop: int) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Cells ``start:stop`` of the dataset: (counts (n, G), binary ATAC (n, P), cell type (n,)). The
    same cells whatever the ``start:stop`` they are asked in."""
    B = model.block_cells
    parts = [_simulate_block(model, b) for b in range(start // B, -(-stop // B))]
    offset = start - (start // B) * B
    counts = sp.vstack([p[0] for p in parts], format="csr")[offset: offset + stop - start]
    atac = sp.vstack([p[1] for p in parts], format="csr")[offset: offset + stop - start]
    return counts, atac, np.concatenate([p[2] for p in parts])[offset: offset + stop - start]


def _simulate_block(model: SimulationModel, block: int) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    B, calib = model.block_cells, model.calibration
    n = min(B, model.n_cells - block * B)
    rng = np.random.default_rng([model.seed, 1, block])
    K = model.gene_loading.shape[0]
    u = rng.standard_normal((n, K))
    x = (u[:, model.program] + rng.standard_normal((n, len(model.program)))) / np.sqrt(2)  # unit variance
    drive = np.asarray((model.weights.T @ x.T).T)  # (n, T), unit variance

    logit = model.peak_log_weight[None, :] + u @ model.peak_loading  # (n, P)
    np.add.at(logit.T, model.enhancer, (1.5 * drive - 1.125).T)  # exp(1.5 d - 1.5^2/2) keeps the mean
    n_open = np.maximum(1, np.rint(rng.choice(calib.open_peaks_per_cell, size=n) * model.open_scale)).astype(np.int64)
    atac = _draw_distinct(np.exp(logit - logit.max(1, keepdims=True)), n_open, rng)

    log_share = model.gene_log_share[None, :] + u @ model.gene_loading  # (n, G)
    log_share[:, model.regulators] += x
    gate = 0.7 + 0.6 * atac[:, model.enhancer].toarray()  # (n, T): enhancers open in a few % of cells
    log_share[:, model.targets] += model.amplitude * (gate / (1.0 + np.exp(-2.0 * drive)) - 0.35)
    share = np.exp(log_share - log_share.max(1, keepdims=True))
    umi = rng.choice(calib.umi_per_cell, size=n) * model.umi_scale
    mu = share * (umi / share.sum(1))[:, None]
    theta = calib.dispersion
    counts = sp.csr_matrix(rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float32))
    return counts, atac, np.char.add("program", u.argmax(1).astype(str)).astype(object)


def _draw_distinct(weight: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Binary (n, P) CSR: row r holds the distinct columns of ``draws[r]`` draws from the
    categorical distribution ``weight[r] / weight[r].sum()`` (one searchsorted for all rows)."""
    n, P = weight.shape
    cdf = np.cumsum(weight, axis=1)
    cdf /= cdf[:, -1:]
    cdf += np.arange(n)[:, None]  # row r's cdf runs over (r, r + 1]
    row = np.repeat(np.arange(n), draws)
    codes = np.unique(np.searchsorted(cdf.ravel(), row + rng.random(len(row)), side="right"))
    rows, cols = np.divmod(codes, P)
    indptr = np.searchsorted(rows, np.arange(n + 1))
    return sp.csr_matrix((np.ones(len(cols), dtype=np.float32), cols.astype(np.int32), indptr), shape=(n, P))


# ------------------------------------------------------------------------- on disk


class _CsrWriter:
    """Rows appended to an h5ad's X in anndata's on-disk CSR format (resizable h5py datasets)."""

    def __init__(self, file, n_cols: int):
        self.group = file.create_group("X")
        self.group.attrs.update({"encoding-type": "csr_matrix", "encoding-version": "0.1.0"})
        self.data = self.group.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(1 << 16,))
        self.indices = self.group.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 16,))
        self.indptr, self.n_cols = [np.zeros(1, dtype=np.int64)], n_cols

    def append(self, rows: sp.csr_matrix) -> None:
        nnz = self.data.shape[0]
        for dataset, values in ((self.data, rows.data), (self.indices, rows.indices)):
            dataset.resize((nnz + len(values),))
            dataset[nnz:] = values
        self.indptr.append(rows.indptr[1:].astype(np.int64) + nnz)

    def close(self) -> None:
        indptr = np.concatenate(self.indptr)
        if indptr[-1] < np.iinfo(np.int32).max:  # scipy wants indptr and indices of one dtype
            indptr = indptr.astype(np.int32)
        self.group.create_dataset("indptr", data=indptr)
        self.group.attrs["shape"] = (len(indptr) - 1, self.n_cols)


def _write_frames(file, obs: pd.DataFrame, var: pd.DataFrame) -> None:
    from anndata.io import write_elem

    file.attrs.update({"encoding-type": "anndata", "encoding-version": "0.1.0"})
    write_elem(file, "obs", obs)
    write_elem(file, "var", var)


def simulate_dataset(out: Path, n_cells: int, n_genes: int, n_peaks: int, *, chunk_cells: int = 5_000,
                     progress: bool = False, **plan) -> pd.DataFrame:
    """Write a calibrated simulated dataset folder to ``out`` (files: see the module's "Calibrated
    simulator") in chunks of ``chunk_cells`` cells, and return :func:`calibration_table` of it
    against the references. ``plan``: :func:`plan_simulation`'s options."""
    import h5py
    import yaml
    from tqdm import tqdm


    out = Path(out)
    model = plan_simulation(n_cells, n_genes, n_peaks, **plan)
    stats = Statistics(n_genes, n_peaks)
    cell_types = []
    with atomic_path(out / "rna.h5ad") as rna_tmp, atomic_path(out / "atac.h5ad") as atac_tmp, \
            h5py.File(rna_tmp, "w") as rna_file, h5py.File(atac_tmp, "w") as atac_file:
        rna_x, atac_x = _CsrWriter(rna_file, n_genes), _CsrWriter(atac_file, n_peaks)
        for start in tqdm(range(0, n_cells, chunk_cells), desc="simulating chunks of cells", disable=not progress):
            counts, atac, types = simulate_cells(model, start, min(start + chunk_cells, n_cells))
            rna_x.append(counts)
            atac_x.append(atac)
            stats.add(counts, atac)
            cell_types.append(types)
        rna_x.close()
        atac_x.close()
        barcodes = pd.Index([f"cell{i:07d}" for i in range(n_cells)])
        _write_frames(rna_file, pd.DataFrame({"cell_type": pd.Categorical(np.concatenate(cell_types))}, index=barcodes),
                      pd.DataFrame({"gene_ids": model.genes.gene_id.to_numpy()}, index=pd.Index(model.genes.gene)))
        _write_frames(atac_file, pd.DataFrame(index=barcodes), pd.DataFrame(index=model.peaks.index))
    table = calibration_table(model.calibration.statistics, stats.result(
        model.peaks.End - model.peaks.Start, peak_gaps(model.peaks) / model.gap_scale))
    _write_csv(out / "planted_edges.csv", model.edges.rename(columns={"tf": "source"}))
    _write_csv(out / "planted_links.csv", model.links)
    _write_csv(out / "calibration.csv", table)
    with atomic_path(out / "dataset.yaml") as tmp:  # last: a folder with a dataset.yaml is complete
        tmp.write_text(yaml.safe_dump(_dataset_yaml(model, n_cells, n_genes, n_peaks, plan), sort_keys=False))
    return table


def _write_csv(path: Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _dataset_yaml(model: SimulationModel, n_cells: int, n_genes: int, n_peaks: int, plan: dict) -> dict:
    return {
        "title": f"Calibrated simulation: {n_cells} cells x {n_genes} genes x {n_peaks} peaks, seed {model.seed} "
                 f"({len(model.edges)} planted TF-target edges, {len(model.links)} CRE-gene links)",
        "genome": "hg38", "format": "h5ad_pair", "files": {"rna": "rna.h5ad", "atac": "atac.h5ad"},
        "rna_values": "raw_counts", "annotation": "hg38_ensembl93", "prior": "planted_edges.csv",
        "tf_list": "lambert2018", "cell_type_column": "cell_type",
        "candidate_window": int(plan.get("link_window", 100_000)),
        "qc": {"min_cells_per_gene": 3, "min_cells_per_peak": 3, "min_genes_per_cell": 20, "min_peaks_per_cell": 5},
    }


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write a simulated paired RNA + ATAC dataset folder calibrated on "
                                                 "the bundled datasets; print how close it is to them.")
    parser.add_argument("--cells", type=int, default=2_000)
    parser.add_argument("--genes", type=int, default=1_000)
    parser.add_argument("--peaks", type=int, default=5_000)
    parser.add_argument("--regulators", type=int, default=None, help="default: genes / 40")
    parser.add_argument("--chunk-cells", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--umi-median", type=float, default=None,
                        help="median UMI per cell (a 10x run: ~5000); default: the reference's, scaled to the genes")
    parser.add_argument("--open-median", type=float, default=None,
                        help="median open peaks per cell (a 10x run: ~7000); default: the reference's, scaled")
    parser.add_argument("--out", type=Path, required=True,
                        help="the dataset folder, e.g. data/datasets/sim_50k (its name is the dataset key)")
    args = parser.parse_args(argv)
    table = simulate_dataset(args.out, args.cells, args.genes, args.peaks, n_regulators=args.regulators,
                             chunk_cells=args.chunk_cells, seed=args.seed, progress=True,
                             umi_median=args.umi_median, open_median=args.open_median)
    print(table.to_markdown(index=False, floatfmt=".3g"))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
