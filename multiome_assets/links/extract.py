"""CRE–gene links read from the translators' attention, and the standard correlation links beside them.

Attention links (ATAC→RNA, as Cisformer): per cell, the last decoder layer's cross-attention of every
gene query over the cell's accessible cCREs, as the model computed it (masked softmax, heads
averaged); rank-normalized (genes ranked within each cCRE, then those ranks ranked within each
gene, ties averaged, scaled to [0, 1] by the cell's number of cCREs); the in-window (gene, cCRE)
pairs gathered; averaged over the cells of a set (a pair absent from a cell counts 0, as the
reference counts it). Batches of cells, gene queries in the chunks and order of prediction; no loop
over genes or pairs.

Gene link scores (RNA→ATAC): per cell, the attention each expressed gene receives from every
covered cCRE query, summed; summed over the set's cells; log10, min-max scaled (genes never
attended dropped).

Correlation links: Pearson correlation across metacells (each the mean of a cell and its nearest
neighbours in an SVD of the RNA) between a gene's log-normalized expression and a cCRE's
accessibility, for the same in-window pairs (as ArchR's peak-to-gene links). Each link's z-score
and one-sided p-value come against background pairs, as Signac's LinkPeaks: the gene with
N_BACKGROUND cCREs drawn from other chromosomes (no cis regulation possible) in the same
accessibility decile as the link's cCRE; p = 1 - Φ(z).
"""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy import stats

from multiome_assets import intervals
from multiome_assets.models.cisformer import MAX_COUNT
from multiome_assets.models.progress import ChunkLog
from multiome_assets.translation.tokens import VocabCells, padded, sample_per_row

N_BACKGROUND = 100
BACKGROUND_CHUNK = 20_000  # pairs whose background is drawn and correlated at once (2 M correlations)
KEY_BLOCK = 16  # keys ranked at once: their (16, G) 64-bit words stay in cache (~3.5 MB at 27,444 genes)
BATCH_ELEMENTS = 2 * 10**7  # cells x genes x cCRE keys per batch of attention links (~80 MB of fp32 each copy)


def cre_frame(cres: np.ndarray, vocab: pd.DataFrame) -> pd.DataFrame:
    """The covered cCREs (vocabulary indices) with coordinates, named `cCRE<index>`."""
    return vocab.iloc[cres].set_axis([f"cCRE{i}" for i in cres]).assign(cre_index=cres)


def window_pairs(cells: VocabCells, genes: pd.DataFrame, vocab: pd.DataFrame, window: int) -> pd.DataFrame:
    """Every (vocabulary gene, covered cCRE) pair with the cCRE within ±`window` bp of the gene's TSS.

    genes: the dataset's genes with `vocab_index`, `chrom`, `tss` (gene_vocab_map joined to
    gene_annotation). Columns: gene (symbol), gene_pos (column in `cells.genes`), cre, cre_pos
    (column in `cells.cres`), chrom, start, end, distance (bp from the TSS to the cCRE's nearest edge).
    """
    genes = genes.dropna(subset=["vocab_index", "tss"]).drop_duplicates("vocab_index")
    genes = genes[genes.vocab_index.astype(np.int64).isin(cells.genes)]
    frame = cre_frame(cells.cres, vocab)
    hits = intervals.candidate_sets(genes, frame, window, sys.maxsize)
    by_gene = genes.set_index("gene").vocab_index.astype(np.int64)
    coords = frame.iloc[hits.peak_index.to_numpy()]
    return pd.DataFrame({
        "gene": hits.gene.to_numpy(),
        "gene_pos": np.searchsorted(cells.genes, by_gene.loc[hits.gene].to_numpy()),
        "cre": hits.peak.to_numpy(), "cre_pos": hits.peak_index.to_numpy(),
        "chrom": coords.Chromosome.to_numpy(), "start": coords.Start.to_numpy(), "end": coords.End.to_numpy(),
        "distance": hits.distance.to_numpy(),
    })


def pair_rank_scores(weights: torch.Tensor, key_mask: torch.Tensor, cell: torch.Tensor, gene: torch.Tensor,
                     key: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """The rank-normalized scores of the (cell, gene, key) entries of (B, K, G) attention laid out key
    by key (`key_mask` (B, K): real keys): genes ranked within each key, those ranks ranked within
    each gene over the real keys, ties averaged, scaled by (keys - 1).

    Only the entries asked for are ranked within their gene: each entry's within-gene rank is a
    count over its gene's row (the full (B, G, K) rank matrix is ~3x the work at a 10x run's size)."""
    genes, slot = torch.unique(gene, return_inverse=True)
    within_key = _within_key_ranks(weights, genes, key_mask).transpose(1, 2).contiguous()  # (B, U, K)
    n_keys = key_mask.sum(1).clamp(min=2).to(torch.float32)  # one key: every gene ranks 0
    out = torch.empty(len(cell))
    for i in range(0, len(cell), chunk):
        b, u, k = cell[i:i + chunk], slot[i:i + chunk], key[i:i + chunk]
        row, value, valid = within_key[b, u], within_key[b, u, k][:, None], key_mask[b]
        below = ((row < value) & valid).sum(1)
        equal = ((row == value) & valid).sum(1)
        out[i:i + chunk] = (below + (equal - 1) / 2) / (n_keys[b] - 1)
    return out


def _within_key_ranks(weights: torch.Tensor, genes: torch.Tensor, key_mask: torch.Tensor,
                      block: int = KEY_BLOCK) -> torch.Tensor:
    """(B, K, U): the rank (from 0, ties averaged) of each of `genes` among all G genes of its key in
    (B, K, G) non-negative attention.

    One sort per key of 64-bit words, the weight's float32 bits above the gene's index (non-negative
    floats order as their bits do), gives each gene's place in its key's order; a tied gene's rank is
    the middle of its run of ties. Keys go in blocks whose words stay in cache. At a 10x run's size
    `pair_rank_scores` takes 0.85 s a cell this way, 2.2 s with a float sort and a binary search of
    every asked weight (one core, the same synthetic attention; the results identical)."""
    rows = weights.numpy().reshape(-1, weights.shape[-1])
    real = key_mask.numpy().reshape(-1)
    ranks = [_key_block_ranks(rows[i:i + block], genes.numpy(), real[i:i + block]) for i in range(0, len(rows), block)]
    return torch.from_numpy(np.concatenate(ranks)).reshape(*weights.shape[:2], len(genes))


def _key_block_ranks(rows: np.ndarray, genes: np.ndarray, real: np.ndarray) -> np.ndarray:
    """_within_key_ranks of a block of keys' rows (keys, G); padded keys' (`real` False) ties not resolved."""
    n = rows.shape[-1]
    words = rows.view(np.int32).astype(np.int64)
    words <<= 32
    words |= np.arange(n)
    words.sort(-1)
    halves = words.view(np.int32).reshape(*words.shape, 2)  # little-endian: [..., 0] the gene, [..., 1] the bits
    place = np.empty(words.shape, np.int32)
    np.put_along_axis(place, halves[..., 0], np.arange(n, dtype=np.int32)[None], -1)
    at = place[:, genes]
    same = halves[:, 1:, 1] == halves[:, :-1, 1]  # place i ties with i + 1
    tied = np.zeros(words.shape, bool)
    tied[:, 1:] |= same
    tied[:, :-1] |= same
    ranks = at.astype(np.float32)
    row, column = np.nonzero(np.take_along_axis(tied, at, -1) & real[:, None])
    first, last = _run_ends(same, row, at[row, column])
    ranks[row, column] = (first + last) / 2
    return ranks


def _run_ends(same: np.ndarray, row: np.ndarray, place: np.ndarray, max_steps: int = 32):
    """The first and last places of the runs of ties holding `place` in `row` (`same[r, i]`: place i
    of row r ties with i + 1). Ties are few in float attention (a few % of entries, runs of 2-3), so
    they step along their rows; long runs (e.g. many exact zeros) take every row's bounds at once."""
    n = same.shape[-1] + 1
    first, last = place.copy(), place.copy()
    for _ in range(max_steps):
        left = (first > 0) & same[row, np.maximum(first - 1, 0)]
        right = (last < n - 1) & same[row, np.minimum(last, n - 2)]
        if not (left.any() or right.any()):
            return first, last
        first -= left
        last += right
    places = np.arange(n)
    starts = np.ones((len(same), n), bool)
    starts[:, 1:] = ~same
    ends = np.ones_like(starts)
    ends[:, :-1] = ~same
    run_first = np.maximum.accumulate(np.where(starts, places, 0), -1)
    run_last = np.minimum.accumulate(np.where(ends, places, n)[:, ::-1], -1)[:, ::-1]
    return run_first[row, place], run_last[row, place]


@torch.no_grad()
def attention_links(model, cells: VocabCells, pairs: pd.DataFrame, sets: dict[str, np.ndarray], *,
                    gene_chunk: int, max_cres: int, batch_size: int | None = None, seed: int = 0,
                    device: str = "cpu", log=None) -> pd.DataFrame:
    """(cell_set, pair row, score) of the ATAC→RNA attention links (module docstring); `log(line)`
    hears the cells done and the time left."""
    model.eval().to(device)
    batch_size = batch_size or int(np.clip(BATCH_ELEMENTS // (len(cells.genes) * max_cres), 1, 64))
    order = np.random.default_rng(seed).permutation(len(cells.genes))  # as translate_rna chunks genes
    pair_gene = torch.as_tensor(pairs.gene_pos.to_numpy())
    pair_cre = torch.as_tensor(pairs.cre_pos.to_numpy())
    out, progress = [], ChunkLog(log, "attention links", sum(map(len, sets.values())), "cells")
    for name, rows in sets.items():
        rng = np.random.default_rng(seed)
        total = torch.zeros(len(pairs))
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            ci, _, cm = padded(sample_per_row(cells.atac, batch, max_cres, rng))
            weights = torch.zeros(len(batch), ci.shape[1], len(cells.genes))  # keys x genes: ranked along genes
            for g0 in range(0, len(order), gene_chunk):
                columns = torch.as_tensor(order[g0:g0 + gene_chunk])
                genes = torch.as_tensor(cells.genes)[columns].expand(len(batch), -1)
                last = model.last_attention(ci.to(device), cm.to(device), genes.to(device),
                                            torch.ones_like(genes, dtype=torch.bool, device=device))
                weights[:, :, columns] = last.mean(1).float().transpose(1, 2).cpu()
            # each cell's key position of every covered cCRE (-1: not among its keys)
            position = torch.full((len(batch), len(cells.cres)), -1, dtype=torch.long)
            cre_pos = torch.as_tensor(np.searchsorted(cells.cres, ci.numpy()))
            b, k = torch.nonzero(cm, as_tuple=True)
            position[b, cre_pos[b, k]] = k
            at = position[:, pair_cre]  # (B, pairs)
            b, pair = torch.nonzero(at >= 0, as_tuple=True)
            total.index_add_(0, pair, pair_rank_scores(weights, cm, b, pair_gene[pair], at[b, pair]))
            progress.advance(len(batch))
        out.append(pd.DataFrame({"cell_set": name, "pair": np.arange(len(pairs)), "score": (total / len(rows)).numpy()}))
    return pd.concat(out, ignore_index=True)


@torch.no_grad()
def gene_link_scores(model, cells: VocabCells, sets: dict[str, np.ndarray], *, cre_chunk: int, max_genes: int,
                     batch_size: int = 8, seed: int = 0, device: str = "cpu", log=None) -> pd.DataFrame:
    """(cell_set, gene_pos, score, raw) of the RNA→ATAC gene link scores (module docstring)."""
    model.eval().to(device)
    out, progress = [], ChunkLog(log, "gene link scores", sum(map(len, sets.values())), "cells")
    for name, rows in sets.items():
        rng = np.random.default_rng(seed)
        total = torch.zeros(len(cells.genes), dtype=torch.float64)
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            gi, gv, gm = padded(sample_per_row(cells.rna, batch, max_genes, rng))
            value = gv.round().long().clamp(0, MAX_COUNT).to(device)
            received = torch.zeros(gi.shape, dtype=torch.float64)
            for c0 in range(0, len(cells.cres), cre_chunk):
                cres = torch.as_tensor(cells.cres[c0:c0 + cre_chunk]).expand(len(batch), -1)
                last = model.last_attention(gi.to(device), gm.to(device), cres.to(device),
                                            torch.ones_like(cres, dtype=torch.bool, device=device), value)
                received += last.mean(1).sum(1).double().cpu()  # (B, keys): summed over cCRE queries
            b, k = torch.nonzero(gm, as_tuple=True)
            total.index_add_(0, torch.as_tensor(np.searchsorted(cells.genes, gi[b, k].numpy())), received[b, k])
            progress.advance(len(batch))
        raw = total.numpy()
        attended = raw > 0
        logged = np.log10(raw[attended])
        span = logged.max() - logged.min() if attended.any() else 0.0
        scaled = (logged - logged.min()) / span if span > 0 else np.ones_like(logged)
        out.append(pd.DataFrame({"cell_set": name, "gene_pos": np.flatnonzero(attended), "score": scaled,
                                 "raw": raw[attended]}))
    return pd.concat(out, ignore_index=True)


def metacells(rna_log: sp.csr_matrix, k: int = 10, n_components: int = 20, seed: int = 0) -> sp.csr_matrix:
    """(metacells, cells) averaging weights: each of ~n/k seed cells with its k-1 nearest
    neighbours in a truncated SVD of the log-normalized RNA."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.neighbors import NearestNeighbors

    n = rna_log.shape[0]
    k = max(1, min(k, n))
    z = TruncatedSVD(min(n_components, min(rna_log.shape) - 1), random_state=seed).fit_transform(rna_log)
    seeds = np.random.default_rng(seed).choice(n, max(2, n // k), replace=False) if n > 2 else np.arange(n)
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(z).kneighbors(z[seeds])
    return sp.csr_matrix((np.full(neighbours.size, 1.0 / k), (np.repeat(np.arange(len(seeds)), k), neighbours.ravel())),
                         shape=(len(seeds), n))


def correlation(x: np.ndarray, y: np.ndarray, pairs_x: np.ndarray, pairs_y: np.ndarray,
                chunk: int = 200_000) -> np.ndarray:
    """Pearson r across rows between columns `pairs_x` of x and `pairs_y` of y, pair by pair
    (NaN where either is constant)."""
    return paired_correlation(standardized_columns(x), standardized_columns(y), pairs_x, pairs_y, chunk)


def standardized_columns(m: np.ndarray) -> np.ndarray:
    """(columns, rows): each column of `m` centred and scaled to unit variance (NaN where constant),
    laid out as a row, so that a pair's two columns are each one contiguous read (15x faster than
    gathering columns)."""
    m = np.asarray(m, dtype=np.float64)
    m = m - m.mean(0)
    sd = np.sqrt((m ** 2).mean(0))
    return np.ascontiguousarray(np.divide(m, sd, out=np.full_like(m, np.nan), where=sd > 0).T)


def paired_correlation(zx: np.ndarray, zy: np.ndarray, pairs_x: np.ndarray, pairs_y: np.ndarray,
                       chunk: int = 200_000) -> np.ndarray:
    """Pearson r of each pair of rows of `standardized_columns` outputs, `chunk` pairs at a time."""
    return np.concatenate([np.einsum("ij,ij->i", zx[pairs_x[i:i + chunk]], zy[pairs_y[i:i + chunk]]) / zx.shape[1]
                           for i in range(0, len(pairs_x), chunk)]) if len(pairs_x) else np.zeros(0)


def correlation_links(cells: VocabCells, rna_log: sp.csr_matrix, pairs: pd.DataFrame, cre_chrom: np.ndarray,
                      seed: int = 0) -> pd.DataFrame:
    """(cell_set "all", pair, score, zscore, pvalue) of the correlation links: metacell Pearson r per
    in-window pair, against background pairs (module docstring). `rna_log`: (cells,
    len(cells.genes)) log-normalized expression of the vocabulary genes; `cre_chrom`: the
    chromosome of each covered cCRE (`cells.cres` order)."""
    weights = metacells(rna_log, seed=seed)
    expression = (weights @ rna_log).toarray()
    access = (weights @ cells.atac[:, cells.cres].astype(np.float64)).toarray()
    gene_pos, cre_pos, gene_chrom = pairs.gene_pos.to_numpy(), pairs.cre_pos.to_numpy(), pairs.chrom.to_numpy()
    z_expression, z_access = standardized_columns(expression), standardized_columns(access)
    r = paired_correlation(z_expression, z_access, gene_pos, cre_pos)
    accessibility, rng = access.mean(0), np.random.default_rng(seed)
    mean, sd = np.full(len(r), np.nan), np.full(len(r), np.nan)
    for i in range(0, len(r), BACKGROUND_CHUNK):  # chunks of pairs: (chunk, N_BACKGROUND) at a time, not (pairs, ...)
        part = slice(i, i + BACKGROUND_CHUNK)
        background = background_cres(accessibility, np.asarray(cre_chrom), cre_pos[part], gene_chrom[part], rng)
        r_bg = paired_correlation(z_expression, z_access, np.repeat(gene_pos[part], background.shape[1]),
                                  background.ravel(), chunk=50_000).reshape(background.shape)
        mean[part], sd[part] = np.nanmean(r_bg, 1), np.nanstd(r_bg, 1)
    z = np.divide(r - mean, sd, out=np.full_like(r, np.nan), where=sd > 0)
    return pd.DataFrame({"cell_set": "all", "pair": np.arange(len(pairs)), "score": r, "zscore": z,
                         "pvalue": stats.norm.sf(z)})


def background_cres(accessibility: np.ndarray, cre_chrom: np.ndarray, cre_pos: np.ndarray, gene_chrom: np.ndarray,
                    rng: np.random.Generator, n: int = N_BACKGROUND) -> np.ndarray:
    """(pairs, n) covered-cCRE positions: for each pair, cCREs of the same accessibility decile as its
    cCRE on other chromosomes than its gene's (drawn with replacement)."""
    edges = np.unique(np.quantile(accessibility, np.linspace(0, 1, 11)))
    decile = np.clip(np.searchsorted(edges, accessibility, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = np.empty((len(cre_pos), n), dtype=np.int64)
    groups = pd.DataFrame({"decile": decile[cre_pos], "chrom": gene_chrom}).groupby(["decile", "chrom"]).indices
    for (d, chrom), rows in groups.items():
        pool = np.flatnonzero((decile == d) & (cre_chrom != chrom))
        if not len(pool):  # one chromosome only: any other cCRE of the decile
            pool = np.flatnonzero(decile == d)
        out[rows] = rng.choice(pool, size=(len(rows), n))
    return out


def links_table(pairs: pd.DataFrame, scored: pd.DataFrame, method: str) -> pd.DataFrame:
    """The `cre_gene_links` rows of one method: scored pairs (score > 0 for attention; any finite r),
    ranked per (cell type, gene), 1 = strongest."""
    table = scored[np.isfinite(scored.score) & ((scored.score > 0) | (method != "attention"))]
    nan = np.full(len(table), np.nan)
    table = pairs.iloc[table.pair.to_numpy()].reset_index(drop=True).assign(
        cell_type=table.cell_set.to_numpy(), score=table.score.to_numpy(), method=method,
        zscore=table.zscore.to_numpy() if "zscore" in table else nan,
        pvalue=table.pvalue.to_numpy() if "pvalue" in table else nan)
    table["rank"] = table.groupby(["cell_type", "gene"]).score.rank(ascending=False, method="min").astype(np.int64)
    return table[["method", "cell_type", "gene", "cre", "chrom", "start", "end", "distance", "score", "rank",
                  "zscore", "pvalue"]]


@torch.no_grad()
def tf_attended_cres(model, cells: VocabCells, rows: np.ndarray, tf_pos: np.ndarray, *, cre_chunk: int,
                     max_genes: int, top: int, batch_size: int = 8, seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    """(tf_pos, cre_pos, attention, rank) of each TF gene's `top` most attended covered cCREs in
    RNA→ATAC translation: the last layer's cross-attention every cCRE query pays the TF gene (heads
    averaged), summed over `rows` cells where the TF is expressed. `tf_pos`: positions in
    `cells.genes`. The paper's check of a TF's top-attended peaks against its ChIP-seq peaks reads these."""
    model.eval().to(device)
    rng = np.random.default_rng(seed)
    slot = np.full(len(cells.genes), -1)
    slot[tf_pos] = np.arange(len(tf_pos))
    total = torch.zeros(len(tf_pos), len(cells.cres), dtype=torch.float32)
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        gi, gv, gm = padded(sample_per_row(cells.rna, batch, max_genes, rng))
        key_slot = torch.as_tensor(slot[np.searchsorted(cells.genes, gi.numpy()).clip(max=len(cells.genes) - 1)])
        b, k = torch.nonzero(gm & (key_slot >= 0), as_tuple=True)
        if not len(b):
            continue
        value = gv.round().long().clamp(0, MAX_COUNT).to(device)
        for c0 in range(0, len(cells.cres), cre_chunk):
            cres = torch.as_tensor(cells.cres[c0:c0 + cre_chunk]).expand(len(batch), -1)
            last = model.last_attention(gi.to(device), gm.to(device), cres.to(device),
                                        torch.ones_like(cres, dtype=torch.bool, device=device), value)
            paid = last.mean(1).float().cpu()  # (B, cCRE queries, gene keys)
            total[:, c0:c0 + cres.shape[1]].index_add_(0, key_slot[b, k], paid[b, :, k])
    n = min(top, len(cells.cres))
    values, cre_pos = total.topk(n, dim=1)
    out = pd.DataFrame({"tf_pos": np.repeat(tf_pos, n), "cre_pos": cre_pos.numpy().ravel(),
                        "attention": values.numpy().ravel(), "rank": np.tile(np.arange(1, n + 1), len(tf_pos))})
    return out[out.attention > 0].reset_index(drop=True)
