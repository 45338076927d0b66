"""Cells as vocabulary tokens: samples are what the cell has (or lacks), batches pad to real lengths."""
import numpy as np
import scipy.sparse as sp

from multiome_assets.translation.tokens import (
    atac2rna_batch,
    expression_bins,
    length_buckets,
    padded,
    rna2atac_batch,
    sample_absent,
    sample_per_row,
    vocab_cells,
)


def _cells(rng, n_cells=30, n_genes=40, n_vocab=100, n_cres=5000):
    counts = sp.random(n_cells, n_genes, density=0.3, random_state=1, data_rvs=lambda k: rng.integers(1, 200, k)).tocsr()
    vocab_index = rng.permutation(n_vocab)[:n_genes].astype(float)
    vocab_index[3] = np.nan  # a gene outside the vocabulary
    cres = sp.random(n_cells, n_cres, density=0.02, random_state=2).tocsr().astype(bool)
    return counts, vocab_index, vocab_cells(counts, vocab_index, n_vocab, cres)


def test_vocab_cells_move_counts_to_vocabulary_columns(rng):
    counts, vocab_index, cells = _cells(rng)
    assert cells.rna.shape == (30, 100)
    g = 5
    np.testing.assert_array_equal(cells.rna[:, int(vocab_index[g])].toarray(), counts[:, g].toarray())
    assert int(vocab_index[4]) in cells.genes and len(cells.genes) == 39  # the unmapped gene is gone
    assert cells.rna.sum() == counts.sum() - counts[:, 3].sum()


def test_samples_are_distinct_entries_of_the_row_up_to_k(rng):
    m = sp.random(50, 300, density=0.1, random_state=3).tocsr()
    rows = np.array([4, 0, 49, 4])
    out = sample_per_row(m, rows, 12, rng)
    for r, row in enumerate(rows):
        kept, full = set(out[r].indices), set(m[row].indices)
        assert kept <= full and len(kept) == min(12, len(full)) == out[r].nnz
        np.testing.assert_array_equal(out[r].data, m[row, out[r].indices].toarray().ravel())
    # uniform: over many draws every entry of a row is kept about equally often
    seen = np.zeros(300)
    for _ in range(400):
        seen[sample_per_row(m, np.array([0]), 3, rng).indices] += 1
    hits = seen[m[0].indices]
    assert hits.min() > 0.5 * hits.mean()


def test_absent_samples_are_never_in_the_row(rng):
    m = sp.random(20, 200, density=0.2, random_state=4).tocsr()
    pool = np.arange(0, 200, 2)
    out = sample_absent(m, np.arange(20), pool, 50, rng)
    assert np.isin(out, pool).all()
    for r in range(20):
        assert not set(out[r]) & set(m[r].indices)


def test_padding_follows_the_longest_real_row():
    m = sp.csr_matrix(np.array([[0, 3, 0, 5], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=np.float32))
    index, value, mask = padded(m)
    assert index.shape == (3, 2)
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    assert index[0].tolist() == [1, 3] and value[0].tolist() == [3.0, 5.0]


def test_rna2atac_targets_are_the_cells_accessibility(rng):
    _, _, cells = _cells(rng)
    rows = np.array([0, 7, 3])
    batch = rna2atac_batch(cells, rows, rng, max_genes=5, n_active=10, n_inactive=10)
    assert batch.source_index.shape[1] <= 5 and (batch.source_value <= 64).all()
    truth = cells.atac[rows].toarray()
    for r in range(len(rows)):
        q, t = batch.query_index[r][batch.query_mask[r]], batch.targets[r][batch.query_mask[r]]
        np.testing.assert_array_equal(t.numpy(), truth[r, q.numpy()].astype(np.float32))
        assert int(t.sum()) == min(10, truth[r].sum())


def test_atac2rna_targets_are_the_expression_bins(rng):
    _, _, cells = _cells(rng)
    rows = np.arange(6)
    upper = float(np.log1p(cells.rna.max()))
    batch = atac2rna_batch(cells, rows, rng, upper, max_cres=50, n_genes=20)
    bins = expression_bins(cells.rna[rows], upper).toarray()
    assert (batch.query_mask.sum(1) == 20).all()
    for r in range(6):
        q, t = batch.query_index[r][batch.query_mask[r]], batch.targets[r][batch.query_mask[r]]
        np.testing.assert_array_equal(t.numpy(), bins[r, q.numpy()])
    assert bins.max() == 7 and set(np.unique(bins)) <= set(range(8))


def test_length_buckets_cover_every_cell_once_and_group_lengths(rng):
    lengths = rng.integers(1, 1000, 103)
    batches = length_buckets(lengths, 10, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 0.2 * np.ptp(lengths)  # random batches would span most of the range
