"""Candidate sets and the cCRE vocabulary against brute-force interval arithmetic on the real data."""
import numpy as np
import pandas as pd
import pytest

from multiome_assets.annotation import match_genes, read_annotation
from multiome_assets.dataset import reference_path
from multiome_assets.intervals import (
    binarize_to_vocab,
    candidate_matrix,
    candidate_sets,
    peak_to_vocab,
    randomized_candidate_sets,
    read_ccre_bed,
)
from multiome_assets.readers import parse_peaks

from .conftest import BUNDLED


@pytest.fixture(scope="module")
def snare_peaks() -> pd.DataFrame:
    import anndata as ad

    atac = ad.read_h5ad(BUNDLED / "datasets/snareseq_hesc/atac.h5ad", backed="r")
    return parse_peaks(atac.var_names)


@pytest.fixture(scope="module")
def genes() -> pd.DataFrame:
    ann = read_annotation(reference_path("hg38_ensembl93", BUNDLED))
    symbols = pd.Index(ann[ann.chrom.isin(["chr1", "chr19"])].gene_name.drop_duplicates()[:3000])
    return match_genes(symbols, None, ann)


@pytest.mark.parametrize("window", [5_000, 100_000])
def test_candidates_match_brute_force(genes, snare_peaks, window):
    cap = 10
    got = candidate_sets(genes, snare_peaks, window, cap)
    tss, chrom = genes.tss.to_numpy(np.int64), genes.chrom.to_numpy()
    starts, ends, pchrom = snare_peaks.Start.to_numpy(), snare_peaks.End.to_numpy(), snare_peaks.Chromosome.to_numpy()
    for i in np.random.default_rng(0).choice(len(genes), 200, replace=False):
        on = pchrom == chrom[i]
        dist = np.where(tss[i] < starts, starts - tss[i], np.where(tss[i] >= ends, tss[i] - ends + 1, 0))
        inside = np.flatnonzero(on & (starts <= tss[i] + window) & (ends > tss[i] - window))
        expected = inside[np.lexsort((inside, dist[inside]))][:cap]
        mine = got[got.gene == genes.gene[i]].sort_values("rank")
        assert mine.peak_index.tolist() == expected.tolist(), genes.gene[i]
        assert mine["rank"].tolist() == list(range(1, len(expected) + 1))
    assert got.groupby("gene").size().max() <= cap


def test_candidate_matrix_pads_with_minus_one():
    cands = pd.DataFrame({"gene": ["b", "b", "a"], "peak_index": [7, 3, 5], "rank": [1, 2, 1]})
    m = candidate_matrix(cands, pd.Index(["a", "b", "c"]), 3)
    assert m.tolist() == [[5, -1, -1], [7, 3, -1], [-1, -1, -1]]


def test_randomized_candidates_keep_counts(genes, snare_peaks):
    real = candidate_sets(genes, snare_peaks, 100_000, 50)
    rand = randomized_candidate_sets(real, snare_peaks.index, seed=3)
    per_gene = real.groupby("gene").size()
    rand_per_gene = rand.groupby("gene").size().reindex(per_gene.index, fill_value=0)
    assert (rand_per_gene <= per_gene).all() and rand_per_gene.sum() >= 0.99 * per_gene.sum()
    assert len(set(zip(rand.gene, rand.peak_index)) & set(zip(real.gene, real.peak_index))) < 0.05 * len(real)
    assert rand.equals(randomized_candidate_sets(real, snare_peaks.index, seed=3))


def test_vocab_overlap_is_at_least_one_bp():
    vocab = pd.DataFrame({"Chromosome": ["chr1"] * 4, "Start": [0, 100, 199, 200], "End": [50, 150, 210, 300]})
    peaks = pd.DataFrame({"Chromosome": ["chr1", "chr2"], "Start": [100, 0], "End": [200, 1000]}, index=["p", "q"])
    m = peak_to_vocab(peaks, vocab)
    # half-open intervals: [100,200) overlaps [100,150) and [199,210), touches but misses [200,300)
    assert m.toarray().tolist() == [[0, 1, 1, 0], [0, 0, 0, 0]]
    import scipy.sparse as sp

    cells = sp.csr_matrix(np.array([[1, 0], [0, 1]], dtype=np.float32))
    assert binarize_to_vocab(cells, m).toarray().tolist() == [[False, True, True, False], [False] * 4]


def test_real_vocab_matches_brute_force(snare_peaks):
    vocab = read_ccre_bed(reference_path("ccre_hg38", BUNDLED))
    assert len(vocab) == 1_033_239
    m = peak_to_vocab(snare_peaks, vocab)
    on21 = np.flatnonzero(snare_peaks.Chromosome.to_numpy() == "chr21")[:50]
    v21 = vocab[vocab.Chromosome == "chr21"]
    for i in on21:
        s, e = snare_peaks.Start.iloc[i], snare_peaks.End.iloc[i]
        expected = v21.index[(v21.Start < e) & (v21.End > s)].tolist()
        assert m[i].indices.tolist() == sorted(expected)
