"""Translated profiles shaped as scanpy and muon users expect (translation/outputs.py)."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from multiome_assets.models.checkpoint import Checkpoint
from multiome_assets.translation import outputs

CCRES = pd.DataFrame({"Chromosome": ["chr1", "chr1", "chr2"], "Start": [100, 5000, 42], "End": [350, 5200, 90]})
VOCAB = pd.DataFrame({"gene_id": ["ENSG1", "ENSG2", "ENSG3", "ENSG4"], "symbol": ["TBCE", "TBCE", "CD3E", "MS4A1"]})
TRANSLATOR = Checkpoint("translator", {}, {"w": torch.arange(4.0)})


def test_ccres_are_named_by_their_coordinates():
    var = outputs.cre_var(np.array([0, 2]), CCRES)
    assert var.index.tolist() == ["chr1:100-350", "chr2:42-90"]
    assert var.vocab_index.tolist() == [0, 2] and var.start.tolist() == [100, 42]


def test_genes_take_the_datasets_own_symbols_and_shared_ones_their_ids():
    mapped = pd.DataFrame({"gene": ["TBCE", "CD3E-custom"], "vocab_index": [0.0, 2.0]})
    var = outputs.gene_var(np.array([0, 1, 2, 3]), VOCAB, mapped)
    assert var.index.tolist() == ["TBCE_ENSG1", "TBCE_ENSG2", "CD3E-custom", "MS4A1"]
    assert var.index.is_unique and var.gene_ids.tolist() == ["ENSG1", "ENSG2", "ENSG3", "ENSG4"]


def test_expression_goes_onto_the_cp10k_scale_of_the_measured_rna():
    counts = np.array([[0.0, 3.0, 20.0]])
    x = outputs.to_log_normalized(np.log1p(counts), library_size=2_000.0)
    np.testing.assert_allclose(x, np.log1p(counts * 1e4 / 2_000), rtol=1e-6)


def test_a_profile_says_what_it_is_and_where_it_came_from(monkeypatch):
    x = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.4]], dtype=np.float32)
    p = outputs.profile("rna2atac", x, outputs.cre_var(np.arange(3), CCRES), pd.Index(["AAAC-1", "TTTG-1"]),
                        scenario="random", source="pbmc", role="test", cell_types=np.array(["B", "T"]),
                        translator=TRANSLATOR, profile_name="cpu", threshold=0.5)
    assert sp.issparse(p.layers["calls"]) and p.layers["calls"].toarray().tolist() == [[0, 1, 1], [1, 0, 0]]
    assert p.obs.cell_type.tolist() == ["B", "T"] and set(p.obs.role) == {"test"}
    assert p.uns["translator"] == outputs.weights_hash(TRANSLATOR) and p.uns["threshold"] == 0.5
    np.testing.assert_array_equal(outputs.scores(p), x)
    monkeypatch.setattr(outputs, "LOW_PRECISION_ENTRIES", 4)  # a profile too large for float32
    big = outputs.profile("atac2rna", x, outputs.gene_var(np.arange(3), VOCAB, VOCAB.iloc[:0].assign(gene=[], vocab_index=[])),
                          pd.Index(["a", "b"]), scenario="random", source="pbmc", role="translated", cell_types=None,
                          translator=TRANSLATOR, profile_name="cpu", library_size=1e4)
    assert big.X.dtype == np.float16 and big.layers["log1p_counts"].dtype == np.float16
    np.testing.assert_allclose(outputs.scores(big), x, atol=1e-3)
    other = Checkpoint("translator", {}, {"w": torch.arange(4.0) + 1})
    assert outputs.weights_hash(other) != outputs.weights_hash(TRANSLATOR)


def test_the_random_scenario_is_the_modality_a_muon_user_reaches_for():
    assert outputs.modality_name("rna2atac", "random", main=True) == "atac"
    assert outputs.modality_name("atac2rna", "held_out_donor", main=False) == "rna_held_out_donor"
    with pytest.raises(KeyError):
        outputs.modality_name("sideways", "random", main=True)
