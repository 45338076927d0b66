"""Bad input to the translators names the file and the reason."""
import numpy as np
import pandas as pd
import pytest

from multiome_assets import annotation, intervals
from multiome_assets.dataset import DatasetError, load_spec, reference_path
from multiome_assets.preprocess import preprocess
from multiome_assets.readers import read_dataset
from multiome_assets.translation.pipeline import load_cells, splits
from multiome_assets_tests.conftest import write_dataset


def _cells_of(key):
    spec = load_spec(key)
    mo, _ = preprocess(read_dataset(spec), spec.qc, spec.rna_values)
    genes = annotation.match_genes(mo.rna.var_names, mo.rna.var.get("gene_ids"), annotation.read_annotation(spec.annotation))
    vocab_map = annotation.map_to_vocab(genes, annotation.read_gene_vocab(reference_path("gene_vocab_38244")))
    cres = intervals.binarize_to_vocab(mo.atac.X, intervals.peak_to_vocab(
        mo.atac.var, intervals.read_ccre_bed(reference_path("ccre_hg38"))))
    return spec, mo, vocab_map, cres


def test_no_cre_in_the_vocabulary_names_the_atac_file(data_root, bmmc):
    rna, atac = bmmc
    atac = atac.copy()
    atac.var_names = pd.Index([f"chrZ-{1000 * i}-{1000 * i + 500}" for i in range(atac.n_vars)])  # not in hg38
    folder = write_dataset(data_root, "nocre", rna, atac)
    spec, mo, vocab_map, cres = _cells_of("nocre")
    with pytest.raises(DatasetError, match=f"{folder / 'atac.h5ad'}: no peak overlaps a cCRE"):
        load_cells(mo, vocab_map, cres, spec)


def test_no_gene_in_the_vocabulary_names_the_rna_file(data_root, bmmc):
    rna, atac = bmmc
    rna = rna.copy()
    rna.var_names = pd.Index([f"NOTAGENE{i}" for i in range(rna.n_vars)])
    rna.var = rna.var.drop(columns=["gene_ids"], errors="ignore")
    folder = write_dataset(data_root, "nogene", rna, atac)
    spec, mo, vocab_map, cres = _cells_of("nogene")
    with pytest.raises(DatasetError, match=f"{folder / 'rna.h5ad'}: no gene is in the gene vocabulary"):
        load_cells(mo, vocab_map, cres, spec)


def test_translators_do_not_train_on_a_single_modality(data_root, bmmc):
    rna, atac = bmmc
    write_dataset(data_root, "pair", rna, atac)
    (data_root / "datasets/rna_only").mkdir()
    (data_root / "datasets/rna_only/dataset.yaml").write_text(
        "format: h5ad_rna\nfiles: {rna: ../pair/rna.h5ad}\ntranslator_from: pair\n"
        "qc: {min_cells_per_gene: 1, min_genes_per_cell: 1}\n")
    spec, mo, vocab_map, cres = _cells_of("rna_only")
    assert cres.nnz == 0 and np.isfinite(vocab_map.vocab_index.astype(float)).any()
    with pytest.raises(DatasetError, match="has no ATAC"):
        load_cells(mo, vocab_map, cres, spec)
    with pytest.raises(DatasetError, match="only RNA: translators train on paired cells"):
        splits(mo, None, None)
