"""QC and normalization: thresholds do what they say, raw counts are normalized once, sparse throughout."""
import numpy as np
import pytest
import scipy.sparse as sp

from multiome_assets.dataset import DatasetError, QCConfig, load_spec
from multiome_assets.preprocess import log_normalize, preprocess
from multiome_assets.readers import read_dataset

from .conftest import write_dataset


def test_raw_counts_are_normalized_and_kept(data_root, bmmc):
    rna, atac = bmmc
    rna = rna.copy()
    rna.X = rna.layers["counts"].copy()
    del rna.layers["counts"]
    write_dataset(data_root, "raw", rna, atac, rna_values="auto")
    mo, report = preprocess(read_dataset(load_spec("raw")), QCConfig(0, 0, 0, 10**6, 0, 10**6))
    assert report["rna_values"] == "raw_counts"
    counts = mo.rna.layers["counts"]
    assert sp.issparse(mo.rna.X) and sp.issparse(counts)
    row = counts[0].toarray().ravel()
    expected = np.log1p(row / row.sum() * 1e4)
    np.testing.assert_allclose(mo.rna.X[0].toarray().ravel(), expected, rtol=1e-5)


def test_normalized_input_is_not_normalized_twice(data_root, bmmc):
    rna, atac = bmmc
    rna = rna.copy()
    del rna.layers["counts"]
    write_dataset(data_root, "norm", rna, atac, rna_values="normalized")
    before = read_dataset(load_spec("norm"))
    mo, report = preprocess(before, QCConfig(0, 0, 0, 10**6, 0, 10**6))
    assert report["rna_values"] == "normalized" and "counts" not in mo.rna.layers
    assert (mo.rna.X != before.rna.X).nnz == 0


def test_all_zero_counts_layer_is_not_called_non_integer(data_root, bmmc):
    rna, atac = bmmc
    rna = rna.copy()
    rna.layers["counts"] = sp.csr_matrix(rna.shape, dtype=np.float32)
    write_dataset(data_root, "zerocounts", rna, atac)
    with pytest.raises(DatasetError, match=r"dataset\.yaml: layers\['counts'\] is all zero, no cell has any count"):
        preprocess(read_dataset(load_spec("zerocounts")), QCConfig(0, 0, 0, 10**6, 0, 10**6), source=str(load_spec("zerocounts").yaml_path))


def test_qc_thresholds(data_root, bmmc):
    rna, atac = bmmc
    write_dataset(data_root, "qc", rna, atac, rna_counts_layer="counts")
    mo_in = read_dataset(load_spec("qc"))
    qc = QCConfig(min_cells_per_gene=20, min_cells_per_peak=20, min_genes_per_cell=60,
                  max_genes_per_cell=300, min_peaks_per_cell=30, max_peaks_per_cell=200)
    mo, report = preprocess(mo_in, qc)
    gene_cells = np.asarray((mo_in.rna.X > 0).sum(0)).ravel()
    assert list(mo.rna.var_names) == list(mo_in.rna.var_names[gene_cells >= 20])
    n_genes = np.diff(mo.rna.X.indptr)
    n_peaks = np.diff(mo.atac.X.indptr)
    assert n_genes.min() >= 60 and n_genes.max() <= 300 and n_peaks.min() >= 30 and n_peaks.max() <= 200
    assert 0 < report["cells_kept"] < report["cells_in"]
    assert set(np.unique(mo.atac.X.data)) == {1.0}


def test_log_normalize_leaves_empty_cells_zero():
    counts = sp.csr_matrix(np.array([[0, 0], [1, 3]], dtype=np.float32))
    out = log_normalize(counts)
    np.testing.assert_allclose(out.toarray(), [[0, 0], [np.log1p(2500), np.log1p(7500)]], rtol=1e-6)
