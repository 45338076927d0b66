"""Paired RNA + ATAC simulations with a planted network, for testing GRN inference end to end.

Two simulators live here:

- :func:`planted_multiome`: a small in-memory multiome with a planted TF -> target network and
  abstract genes and peaks (``TF001``, ``chr1:...``), for unit tests of the GRN stages.
- ``multiome_assets.simulate.dataset.simulate_dataset``: a dataset folder of any size (e.g. 50,000 cells x 20,000 genes x
  150,000 peaks) written to disk in chunks of cells, calibrated on the bundled real datasets,
  with real gene names, TFs and chromosomes, so every asset of the project runs on it
  (:mod:`multiome_assets.simulate.dataset`; ``python -m multiome_assets.simulate.dataset --help``).

:func:`planted_multiome`'s generative story (all cells x features at once, no per-gene loops):

1. Latent cell state ``u`` (cells, K) ~ N(0, I): K programs.
2. Regulator activity ``x`` (cells, R): the regulator's program plus as much regulator-specific
   noise, standardized. Regulator log-expression is linear in ``x``.
3. Planted edges: each *target* gene belongs to a module (a program) and gets 1-3 regulators,
   mostly of that program, with signed weights (75% activating); its drive
   ``d = x W / ||w||`` (cells, T) has unit variance. Modules give the co-regulation structure
   that an edge classifier can generalize from; a fully random network has none.
4. Peaks are laid out along a genome: gene g's candidates are a contiguous window of up to
   ``n_candidates`` peaks (-1 padded). One candidate of each target is its *enhancer*; the
   enhancer opens with probability ``sigmoid(a_p + 1.5 d)``, so accessibility tracks target
   activity. Other peaks open at a low, latent-modulated rate.
5. Target log-mean: ``base + amp * sigmoid(2 d) * (0.35 + 0.65 * open_enhancer)``: the
   regulators act through a saturating nonlinearity, gated by the enhancer's accessibility.
   Non-target genes follow the latent state weakly.
6. Counts ~ NB(mean = library size x exp(log-mean), dispersion theta = 2) as a Gamma-Poisson
   mixture; normalized values are ``log1p(counts / library * median library)``.

Calibration (``depth=1``): the SNARE-seq hESC RNA (385 cells x 8,595 genes) is 5.4% dense, its
median gene is detected in 2.9% of cells, its median nonzero count is 1, its ATAC is 2.4% dense.
The defaults give 7-8% dense RNA, median detection 5-6%, median nonzero count 1, ATAC ~5%
(regulators are expressed more than the median gene, so a few hundred cells carry signal).
Targets and non-targets have matched mean expression, so "is a target" cannot be read off the
expression level alone.

Only non-regulator genes are targets; regulators are not regulated (no cycles).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.grn.edge_space import EdgeSpace

__all__ = ["PlantedMultiome", "planted_multiome"]


@dataclass(frozen=True)
class PlantedMultiome:
    counts: sp.csr_matrix  # (N, G) float32 raw counts (integral values)
    rna: sp.csr_matrix  # (N, G) float32 log1p(counts / library * median library)
    atac: sp.csr_matrix  # (N, P) float32 binary accessibility
    candidates: np.ndarray  # (G, C) int64 candidate peak columns per gene, -1 padded
    gene_names: np.ndarray  # (G,) str; regulators are "TF###", other genes "G#####"
    peak_names: np.ndarray  # (P,) str "chr1:start-end", in genome order
    regulator_names: np.ndarray  # (R,) str, each also in gene_names
    edges: pd.DataFrame  # planted edges: tf, target, weight (signed)
    enhancer: np.ndarray  # (G,) int64 enhancer peak of each target, -1 for non-targets
    latent: np.ndarray  # (N, K) float32 latent cell state
    program: np.ndarray  # (R,) int64 latent program each regulator follows
    module: np.ndarray  # (G,) int64 program of each target's module, -1 for non-targets

    @property
    def regulator_index(self) -> np.ndarray:
        """(R,) column of each regulator in `gene_names`."""
        return pd.Index(self.gene_names).get_indexer(self.regulator_names)

    def edge_space(self, test_fraction: float = 0.2, seed: int = 0) -> EdgeSpace:
        """Split the planted edges at random into training prior and held-out labels."""
        rng = np.random.default_rng(seed)
        test = rng.random(len(self.edges)) < test_fraction
        return EdgeSpace.from_edges(
            self.regulator_names, self.gene_names, self.edges[~test], self.edges[test]
        )


def planted_multiome(
    n_cells: int = 500,
    n_genes: int = 1000,
    n_regulators: int = 50,
    n_peaks: int = 3000,
    *,
    n_candidates: int = 8,
    n_latent: int = 5,
    target_fraction: float = 0.6,
    cross_program: float = 0.15,
    depth: float = 1.0,
    seed: int = 0,
) -> PlantedMultiome:
    """Simulate paired RNA + ATAC counts from a planted regulator -> target network.

    Parameters
    ----------
    n_cells, n_genes, n_regulators, n_peaks
        Sizes; regulators are genes at random columns.
    n_candidates
        Width C of the (G, C) candidate-peak matrix; each gene has between C/2 and C valid
        candidates.
    n_latent
        Number K of latent programs: each regulator follows one, non-target genes mix them.
    target_fraction
        Fraction of non-regulator genes that get 1-3 planted regulators.
    cross_program
        About this fraction of the planted edges come from outside the target's module program.
    depth
        Multiplies every cell's RNA library size; 1.0 matches the SNARE-seq sparsity, larger
        values give denser counts and a cleaner planted signal.
    seed
        Everything is drawn from ``np.random.default_rng(seed)``.

    Examples
    --------
    >>> sim = planted_multiome(n_cells=200, n_genes=300, n_regulators=20, n_peaks=800, seed=1)
    >>> sim.rna.shape, sim.atac.shape, sim.candidates.shape
    ((200, 300), (200, 800), (300, 8))
    """
    N, G, R, P, C, K = n_cells, n_genes, n_regulators, n_peaks, n_candidates, n_latent
    if not 0 < R < G:
        raise ValueError(f"n_regulators must be in [1, n_genes); got {R} with n_genes={G}")
    if P < C:
        raise ValueError(f"n_peaks ({P}) must be at least n_candidates ({C})")
    rng = np.random.default_rng(seed)

    # 1-2. latent programs and regulator activity: each regulator follows one program
    u = rng.normal(size=(N, K)).astype(np.float32)  # (N, K)
    program = rng.integers(0, K, size=R)  # (R,)
    x = u[:, program] + rng.normal(size=(N, R))  # (N, R): within-program correlation ~0.5
    x = (x - x.mean(0)) / x.std(0)

    # gene layout: regulators at random columns; targets among the other genes
    reg_cols = np.sort(rng.choice(G, size=R, replace=False))
    is_reg = np.zeros(G, dtype=bool)
    is_reg[reg_cols] = True
    others = np.flatnonzero(~is_reg)
    tgt_cols = np.sort(rng.choice(others, size=max(1, int(round(target_fraction * len(others)))), replace=False))
    T = len(tgt_cols)

    # 3. planted edges: 1-3 distinct regulators per target drawn from its module's program plus a
    # few outside regulators (about `cross_program` of the picks); 75% activating
    k = rng.integers(1, min(3, R) + 1, size=T)  # (T,)
    module = program[rng.integers(0, R, size=T)]  # (T,) a program that has regulators
    p_cross = cross_program / ((1 - cross_program) * max(1, K - 1))  # per outside regulator
    in_module = (program[None, :] == module[:, None]) | (rng.random((T, R)) < p_cross)  # (T, R)
    picks = np.argsort(rng.random((T, R)) - in_module, axis=1)[:, :3]  # (T, 3) distinct rows
    use = np.arange(picks.shape[1])[None, :] < k[:, None]  # (T, 3)
    t_idx, slot = np.nonzero(use)
    e_reg = picks[t_idx, slot]
    e_w = np.where(rng.random(len(t_idx)) < 0.75, 1.0, -1.0) * rng.uniform(0.6, 1.2, size=len(t_idx))
    W = np.zeros((R, T))
    W[e_reg, t_idx] = e_w
    drive = x @ (W / np.sqrt((W**2).sum(0)))  # (N, T), unit variance

    # 4. peaks and candidate windows; enhancer accessibility follows its target's drive
    starts = rng.integers(0, P - C + 1, size=G)
    n_valid = rng.integers(max(1, C // 2), C + 1, size=G)
    candidates = starts[:, None] + np.arange(C)[None, :]  # (G, C)
    candidates[np.arange(C)[None, :] >= n_valid[:, None]] = -1
    enhancer = np.full(G, -1, dtype=np.int64)
    enhancer[tgt_cols] = candidates[tgt_cols, rng.integers(0, n_valid[tgt_cols])]
    enh = enhancer[tgt_cols]  # (T,)
    share = np.bincount(enh, minlength=P)  # targets per peak
    peak_drive = np.zeros((N, P))
    np.add.at(peak_drive.T, enh, drive.T)  # (N, P): sum of the drives of each peak's targets
    peak_drive /= np.maximum(share, 1)
    peak_logit = rng.normal(-4.5, 0.8, size=P)[None, :] + 0.4 * (u @ rng.normal(size=(K, P)) / np.sqrt(K))
    is_enh = share > 0
    peak_logit[:, is_enh] = rng.normal(-2.0, 0.5, size=is_enh.sum())[None, :] + 1.5 * peak_drive[:, is_enh]
    peak_logit += rng.normal(0.0, 0.5, size=(N, 1))  # per-cell ATAC depth
    open_ = rng.random((N, P)) < 1.0 / (1.0 + np.exp(-peak_logit))  # (N, P)

    # 5. log-means: low, heavy-tailed baseline; regulators and targets carry the signal
    log_mu = rng.normal(np.log(0.028), 1.3, size=G)[None, :] + 0.3 * (u @ rng.normal(size=(K, G)) / np.sqrt(K))  # (N, G)
    log_mu[:, reg_cols] = rng.normal(np.log(0.15), 0.5, size=R)[None, :] + 1.2 * x
    gate = 0.35 + 0.65 * open_[:, enh]  # (N, T)
    activation = 1.0 / (1.0 + np.exp(-2.0 * drive))  # (N, T) in (0, 1)
    log_mu[:, tgt_cols] = (
        rng.normal(np.log(0.014), 0.8, size=T)[None, :] + rng.uniform(2.5, 4.0, size=T)[None, :] * activation * gate
    )

    # 6. NB counts (Gamma-Poisson), library sizes, log1p normalization
    library = depth * np.exp(rng.normal(0.0, 0.5, size=(N, 1)))
    theta = 2.0
    mu = library * np.exp(log_mu)
    counts = rng.poisson(rng.gamma(theta, mu / theta)).astype(np.float32)  # (N, G)
    counts = sp.csr_matrix(counts)
    lib = np.asarray(counts.sum(1)).ravel()
    target_sum = float(np.median(lib[lib > 0])) if (lib > 0).any() else 1.0
    rna = sp.csr_matrix(sp.diags(np.divide(target_sum, lib, out=np.zeros_like(lib), where=lib > 0)) @ counts)
    rna.data = np.log1p(rna.data).astype(np.float32)

    gene_module = np.full(G, -1, dtype=np.int64)
    gene_module[tgt_cols] = module
    gene_names = np.array([f"G{i:05d}" for i in range(G)], dtype=object)
    gene_names[reg_cols] = [f"TF{j:03d}" for j in range(R)]
    pos = np.arange(P) * 2000 + 10_000
    peak_names = np.array([f"chr1:{p}-{p + 500}" for p in pos], dtype=object)
    edges = pd.DataFrame(
        {"tf": gene_names[reg_cols[e_reg]], "target": gene_names[tgt_cols[t_idx]], "weight": e_w}
    )
    return PlantedMultiome(
        counts=counts,
        rna=rna.astype(np.float32),
        atac=sp.csr_matrix(open_.astype(np.float32)),
        candidates=candidates.astype(np.int64),
        gene_names=gene_names,
        peak_names=peak_names,
        regulator_names=gene_names[reg_cols],
        edges=edges,
        enhancer=enhancer,
        latent=u,
        program=program.astype(np.int64),
        module=gene_module,
    )
