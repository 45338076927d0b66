"""Attention links: the vectorized extraction equals a slow loop over cells, genes and pairs; padded
keys get no attention and change no link; correlation links equal numpy's corrcoef."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from scipy.stats import rankdata

from multiome_assets.links import extract
from multiome_assets.models.cisformer import Translator, TranslatorConfig
from multiome_assets.translation.tokens import padded, sample_per_row, vocab_cells

N_GENES, N_CRES = 12, 40


@pytest.fixture
def tiny():
    rng = np.random.default_rng(3)
    counts = sp.csr_matrix(rng.poisson(1.0, (9, N_GENES)).astype(np.float32))
    open_ = sp.csr_matrix(rng.random((9, N_CRES)) < 0.3)
    cells = vocab_cells(counts, np.arange(N_GENES, dtype=float), N_GENES, open_)
    torch.manual_seed(0)
    model = Translator(TranslatorConfig("atac2rna", n_genes=N_GENES, n_cres=N_CRES, d_model=14, n_layers=2,
                                        n_heads=2, head_dim=4, dropout=0.0)).eval()
    pair_gene, pair_cre = np.nonzero(rng.random((len(cells.genes), len(cells.cres))) < 0.4)
    pairs = pd.DataFrame({"gene_pos": pair_gene, "cre_pos": pair_cre})
    return cells, model, pairs


def test_pair_rank_scores_match_scipy_with_ties_and_padding():
    rng = np.random.default_rng(0)
    weights = torch.as_tensor(rng.integers(0, 4, (2, 6, 9)).astype(np.float32))  # (cells, keys, genes): many ties
    key_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    cell, key, gene = (torch.as_tensor(x) for x in np.nonzero(key_mask.numpy()[:, :, None].repeat(9, 2)))
    got = extract.pair_rank_scores(weights, key_mask, cell, gene, key, chunk=7)
    want = []
    for b in range(2):
        n = int(key_mask[b].sum())
        within_key = rankdata(weights[b, :n].numpy(), axis=1) - 1  # genes ranked within each real key
        within_gene = rankdata(within_key, axis=0) - 1
        want.append((within_gene / (n - 1)).ravel())
    np.testing.assert_allclose(got.numpy(), np.concatenate(want))
    for block in (1, 5):  # blocks of keys that split a cell's keys
        ranks = extract._within_key_ranks(weights, torch.tensor([0, 3, 8]), key_mask, block=block)
        for b in range(2):
            n = int(key_mask[b].sum())
            np.testing.assert_array_equal(ranks[b, :n], (rankdata(weights[b, :n], axis=1) - 1)[:, [0, 3, 8]])


def _slow_links(model, cells, pairs, rows, max_cres):
    """The method written out: one cell at a time, one pair at a time."""
    rng = np.random.default_rng(0)
    total = np.zeros(len(pairs))
    for row in rows:
        keys = sample_per_row(cells.atac, np.array([row]), max_cres, rng).indices
        source = torch.as_tensor(keys)[None]
        genes = torch.as_tensor(cells.genes)[None]
        _, layers = model.attention(source, torch.ones_like(source, dtype=torch.bool), genes,
                                    torch.ones_like(genes, dtype=torch.bool))
        a = layers[-1][0].mean(0).detach().numpy()  # (genes, keys)
        within_cre = np.apply_along_axis(rankdata, 0, a) - 1
        within_gene = np.apply_along_axis(rankdata, 1, within_cre) - 1
        score = within_gene / max(len(keys) - 1, 1)
        for i, (g, c) in enumerate(zip(pairs.gene_pos, pairs.cre_pos)):
            hit = np.flatnonzero(keys == cells.cres[c])
            if len(hit):
                total[i] += score[g, hit[0]]
    return total / len(rows)


def test_vectorized_attention_links_equal_the_slow_loop(tiny):
    cells, model, pairs = tiny
    rows = np.arange(9)
    # one gene chunk (chunks of gene queries attend within the chunk: the loop asks all genes at once)
    fast = extract.attention_links(model, cells, pairs, {"all": rows}, gene_chunk=N_GENES, max_cres=N_CRES,
                                 batch_size=4)
    np.testing.assert_allclose(fast.score.to_numpy(), _slow_links(model, cells, pairs, rows, N_CRES), atol=1e-6)


def test_padded_keys_get_no_attention_and_change_no_link(tiny):
    cells, model, pairs = tiny
    rows = np.arange(9)
    ci, _, cm = padded(sample_per_row(cells.atac, rows, N_CRES, np.random.default_rng(0)))
    assert (~cm).any()  # some cells are padded in this batch
    genes = torch.as_tensor(cells.genes).expand(len(rows), -1)
    with torch.no_grad():
        _, layers = model.attention(ci, cm, genes, torch.ones_like(genes, dtype=torch.bool))
    for weights in layers:
        assert (weights.masked_select(~cm[:, None, None, :].expand_as(weights)) == 0).all()
    one_by_one = extract.attention_links(model, cells, pairs, {"all": rows}, gene_chunk=N_GENES, max_cres=N_CRES,
                                       batch_size=1)
    batched = extract.attention_links(model, cells, pairs, {"all": rows}, gene_chunk=N_GENES, max_cres=N_CRES,
                                    batch_size=9)
    np.testing.assert_allclose(one_by_one.score, batched.score, atol=1e-6)


def test_correlation_is_pearson_pair_by_pair():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(30, 4))
    y[:, 3] = 1.0  # constant: no correlation defined
    px, py = np.array([0, 1, 4, 2]), np.array([1, 1, 0, 3])
    r = extract.correlation(x, y, px, py, chunk=3)
    for i, (a, b) in enumerate(zip(px[:3], py[:3])):
        assert r[i] == pytest.approx(np.corrcoef(x[:, a], y[:, b])[0, 1])
    assert np.isnan(r[3])


def test_background_cres_match_accessibility_and_avoid_the_genes_chromosome():
    rng = np.random.default_rng(0)
    accessibility = np.r_[np.full(50, 0.01), np.full(50, 0.5)] + rng.random(100) * 1e-3
    chrom = np.array(["chr1", "chr2"] * 50)
    background = extract.background_cres(accessibility, chrom, np.array([3, 97]), np.array(["chr2", "chr1"]), rng, n=40)
    assert (chrom[background[0]] == "chr1").all() and (chrom[background[1]] == "chr2").all()
    assert (background[0] < 50).all() and (background[1] >= 50).all()  # the pair's accessibility decile


def test_a_planted_correlation_link_is_significant_and_a_random_pair_is_not():
    """A gene whose expression follows one cCRE across cells: that link's p-value is small, a link to
    an unrelated cCRE's is not (background: other chromosomes, same accessibility)."""
    rng = np.random.default_rng(1)
    n_cells, n_cres = 400, 60
    program = rng.random(n_cells)
    open_ = sp.csr_matrix(rng.random((n_cells, n_cres)) < 0.3)
    planted = (rng.random(n_cells) < program).astype(float)
    open_ = sp.lil_matrix(open_)
    open_[:, 0] = planted[:, None]
    counts = sp.csr_matrix(np.column_stack([rng.poisson(1 + 8 * planted), rng.poisson(3, n_cells)]).astype(np.float32))
    cells = vocab_cells(counts, np.arange(2, dtype=float), 2, sp.csr_matrix(open_))
    pairs = pd.DataFrame({"gene_pos": [0, 0], "cre_pos": [0, 5], "chrom": ["chr1", "chr1"]})
    chrom = np.where(np.arange(len(cells.cres)) < 10, "chr1", "chr2")
    links = extract.correlation_links(cells, sp.csr_matrix(np.log1p(counts.toarray())), pairs, chrom)
    assert links.pvalue[0] < 1e-3 < links.pvalue[1] and links.zscore[0] > 3


def test_each_tf_genes_top_attended_cres_equal_a_slow_loop(tiny):
    """tf_attended_cres against a loop over cells: the last layer's attention every cCRE query pays
    the TF gene (heads averaged), summed over the cells expressing it, then its top cCREs."""
    cells, _, _ = tiny
    torch.manual_seed(1)
    model = Translator(TranslatorConfig("rna2atac", n_genes=N_GENES, n_cres=N_CRES, d_model=14, n_layers=2,
                                        n_heads=2, head_dim=4, dropout=0.0)).eval()
    rows, tf_pos = np.arange(9), np.array([1, 4])
    fast = extract.tf_attended_cres(model, cells, rows, tf_pos, cre_chunk=len(cells.cres), max_genes=N_GENES,
                                    top=5, batch_size=4)
    slow = np.zeros((len(tf_pos), len(cells.cres)))
    for r in rows:  # one cell at a time, every expressed gene in
        gi, gv, gm = padded(sample_per_row(cells.rna, np.array([r]), N_GENES, np.random.default_rng(0)))
        cres = torch.as_tensor(cells.cres)[None]
        with torch.no_grad():
            _, layers = model.attention(gi, gm, cres, torch.ones_like(cres, dtype=torch.bool),
                                        gv.round().long().clamp(0, 64))
        w = layers[-1].mean(1)[0]  # (cCREs, genes of the cell)
        for j, g in enumerate(gi[0].numpy()):
            pos = np.searchsorted(cells.genes, g)
            if gm[0, j] and pos in tf_pos:
                slow[list(tf_pos).index(pos)] += w[:, j].numpy()
    for t, pos in enumerate(tf_pos):
        mine = fast[fast.tf_pos == pos].sort_values("rank")
        np.testing.assert_allclose(mine.attention.to_numpy(), np.sort(slow[t])[::-1][:len(mine)], rtol=1e-5)
        assert set(mine.cre_pos[:3]) == set(np.argsort(-slow[t])[:3])


@pytest.mark.parametrize("max_steps", [1, 32])  # 1: runs longer than the steps take every row's bounds
def test_run_ends_are_the_first_and_last_equal_places(max_steps):
    rng = np.random.default_rng(1)
    ordered = torch.as_tensor(rng.integers(0, 3, (8, 10))).sort(-1).values
    first = torch.searchsorted(ordered, ordered).numpy()
    last = torch.searchsorted(ordered, ordered, right=True).numpy() - 1
    row, i = np.nonzero(np.ones(ordered.shape, bool))
    inside = first[row, i] + (rng.random(len(row)) * (last - first + 1)[row, i]).astype(int)  # anywhere in its run
    same = (ordered[:, 1:] == ordered[:, :-1]).numpy()
    got_first, got_last = extract._run_ends(same, row, inside, max_steps)
    np.testing.assert_array_equal(got_first, first[row, i])
    np.testing.assert_array_equal(got_last, last[row, i])
