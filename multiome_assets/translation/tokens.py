"""Cells as token sets in Cisformer's fixed vocabularies, and padded batches whose cost follows the
real tokens: a batch is padded to its own longest cell, never to the reference's fixed 2,048 /
10,000 slots, and `length_buckets` groups cells of similar length so that little padding is left.

Sampling is vectorized over the non-zeros of CSR matrices: a random key per non-zero, ranked within
its row, keeps the k smallest keys of each row (k distinct entries, uniformly); no loop over cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from multiome_assets.models.cisformer import MAX_COUNT, N_BINS


@dataclass
class VocabCells:
    """Cells in the fixed vocabularies."""

    rna: sp.csr_matrix  # (cells, n_vocab_genes) raw counts, only at genes the dataset has
    atac: sp.csr_matrix  # (cells, n_cres) bool: the cell's accessible cCREs
    genes: np.ndarray  # sorted vocabulary indices of the dataset's genes (what it can say anything about)
    cres: np.ndarray  # sorted vocabulary indices of the cCREs some cell has accessible (covered)

    @property
    def n_cells(self) -> int:
        return self.rna.shape[0]


def vocab_cells(counts: sp.csr_matrix, gene_vocab_index: np.ndarray, n_vocab_genes: int,
                cre_matrix: sp.csr_matrix) -> VocabCells:
    """`counts` (cells, G) raw counts of the dataset's genes, `gene_vocab_index` (G,) each gene's
    vocabulary index (NaN or < 0: not in the vocabulary), `cre_matrix` (cells, n_cres) the
    `peak_vocab_matrix` asset."""
    index = np.asarray(gene_vocab_index, dtype=np.float64)
    mapped = np.flatnonzero(np.isfinite(index) & (index >= 0))
    cols = index[mapped].astype(np.int64)
    # (G, vocabulary) 0/1: two dataset genes mapped to one vocabulary gene add up
    move = sp.csr_matrix((np.ones(len(mapped)), (mapped, cols)), shape=(len(index), n_vocab_genes))
    rna = (sp.csr_matrix(counts) @ move).tocsr()
    rna.eliminate_zeros()
    atac = sp.csr_matrix(cre_matrix, dtype=bool)
    atac.eliminate_zeros()
    return VocabCells(rna, atac, np.unique(cols), np.unique(atac.indices))


def sample_per_row(m: sp.csr_matrix, rows: np.ndarray, k: int, rng: np.random.Generator) -> sp.csr_matrix:
    """The `rows` of `m`, each keeping at most `k` of its stored entries, drawn uniformly without
    replacement (all of them when it has no more)."""
    sub = m[rows]
    sub.sort_indices()
    n = np.diff(sub.indptr)
    row = np.repeat(np.arange(len(rows)), n)
    order = np.lexsort((rng.random(sub.nnz), row))  # by row, then by random key
    rank = np.empty(sub.nnz, dtype=np.int64)
    rank[order] = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], n)
    keep = rank < k
    out = sp.csr_matrix((sub.data[keep], sub.indices[keep], np.r_[0, np.cumsum(np.minimum(n, k))]), shape=sub.shape)
    out.sort_indices()
    return out


def sample_absent(m: sp.csr_matrix, rows: np.ndarray, pool: np.ndarray, k: int,
                  rng: np.random.Generator) -> np.ndarray:
    """(len(rows), k) column indices from `pool` (sorted) that are not stored in the row, uniform
    with replacement (inactive CREs are ~97% of the pool: rejection converges at once)."""
    sub = m[rows]
    sub.sort_indices()
    out = pool[rng.integers(0, len(pool), (len(rows), k))]
    for _ in range(100):
        present = _stored(sub, out)
        if not present.any():
            return out
        out[present] = pool[rng.integers(0, len(pool), int(present.sum()))]
    raise ValueError("a cell is accessible at nearly every covered cCRE; cannot draw inactive ones")


def _stored(sub: sp.csr_matrix, cols: np.ndarray) -> np.ndarray:
    """(R, k) bool: cols[r, j] is stored in row r of `sub` (sorted indices)."""
    R, k = cols.shape
    key = (np.arange(R)[:, None].astype(np.int64) * sub.shape[1] + cols).ravel()
    stored = np.repeat(np.arange(R, dtype=np.int64), np.diff(sub.indptr)) * sub.shape[1] + sub.indices
    pos = np.clip(np.searchsorted(stored, key), 0, max(len(stored) - 1, 0))
    return (stored[pos] == key).reshape(R, k) if len(stored) else np.zeros((R, k), dtype=bool)


def padded(m: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR rows -> (R, L) column indices, (R, L) values, (R, L) mask, L = the longest row."""
    n = np.diff(m.indptr)
    L = max(int(n.max()) if len(n) else 0, 1)
    mask = np.arange(L)[None, :] < n[:, None]
    index = np.zeros((m.shape[0], L), dtype=np.int64)
    value = np.zeros((m.shape[0], L), dtype=np.float32)
    index[mask], value[mask] = m.indices, m.data
    return torch.from_numpy(index), torch.from_numpy(value), torch.from_numpy(mask)


@dataclass
class Batch:
    source_index: torch.Tensor  # (B, Ls)
    source_mask: torch.Tensor  # (B, Ls) True = real token
    query_index: torch.Tensor  # (B, Lq)
    query_mask: torch.Tensor
    targets: torch.Tensor  # (B, Lq): 0/1 (rna2atac) or bin (atac2rna)
    source_value: torch.Tensor | None = None  # (B, Ls) counts (rna2atac)

    def rows(self, which: slice) -> "Batch":
        """These cells of the batch (a process's shard under DDP)."""
        return Batch(*(None if t is None else t[which] for t in (
            self.source_index, self.source_mask, self.query_index, self.query_mask, self.targets, self.source_value)))

    def to(self, device) -> "Batch":
        return Batch(*(None if t is None else t.to(device) for t in (
            self.source_index, self.source_mask, self.query_index, self.query_mask, self.targets, self.source_value)))


def rna2atac_batch(cells: VocabCells, rows: np.ndarray, rng: np.random.Generator, *, max_genes: int = 2048,
                   n_active: int = 1024, n_inactive: int = 1024) -> Batch:
    """Up to `max_genes` expressed genes in (count capped at 64); up to `n_active` accessible and
    `n_inactive` inaccessible covered cCREs out, drawn afresh on every call (pseudo-cells)."""
    genes = sample_per_row(cells.rna, rows, max_genes, rng)
    gi, gv, gm = padded(genes)
    active = sample_per_row(cells.atac, rows, n_active, rng)
    ai, _, am = padded(active)
    inactive = torch.from_numpy(sample_absent(cells.atac, rows, cells.cres, n_inactive, rng))
    query = torch.cat([ai, inactive], 1)
    query_mask = torch.cat([am, torch.ones_like(inactive, dtype=torch.bool)], 1)
    targets = torch.cat([am.float(), torch.zeros(inactive.shape)], 1)
    return Batch(gi, gm, query, query_mask, targets, gv.round().long().clamp(0, MAX_COUNT))


def expression_bins(counts: sp.csr_matrix, upper: float) -> sp.csr_matrix:
    """log1p expression in N_BINS classes: 0 = zero, then 7 equal-width bins of log1p(count)
    over (0, upper] (the training maximum; above it: the last bin)."""
    width = upper / (N_BINS - 1)
    out = counts.copy().astype(np.float32)
    out.data = np.clip(np.ceil(np.log1p(out.data) / width), 1, N_BINS - 1)
    return out


def atac2rna_batch(cells: VocabCells, rows: np.ndarray, rng: np.random.Generator, upper: float, *,
                   max_cres: int = 10_000, n_genes: int = 3_000) -> Batch:
    """Up to `max_cres` accessible cCREs in; `n_genes` of the dataset's genes out, drawn uniformly
    per cell whatever their expression (which genes are asked must not tell the answer: gene queries
    attend to each other), with their bins."""
    ci, _, cm = padded(sample_per_row(cells.atac, rows, max_cres, rng))
    n_out = min(n_genes, len(cells.genes))
    picked = np.argsort(rng.random((len(rows), len(cells.genes))), axis=1)[:, :n_out]  # (B, n_out) distinct
    bins = expression_bins(cells.rna[rows][:, cells.genes], upper).toarray()  # (B, G)
    targets = np.take_along_axis(bins, picked, axis=1)
    query = torch.from_numpy(cells.genes[picked])
    return Batch(ci, cm, query, torch.ones_like(query, dtype=torch.bool), torch.from_numpy(targets).long())


def length_buckets(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, repeats: int = 1) -> list[np.ndarray]:
    """Batches of cells of similar length (sorted by length with random tie order, cut into
    batches, the batches shuffled): padding follows the real tokens. With `repeats`, each cell is
    in `repeats` batches, bucketed apart, so that no batch holds a cell twice."""
    batches = []
    for _ in range(repeats):
        order = np.lexsort((rng.random(len(lengths)), lengths))
        batches += [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
