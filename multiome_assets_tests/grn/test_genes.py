"""The GRN's gene budget: TFs and prior genes always kept, the most variable genes fill the rest."""
import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from multiome_assets.grn.genes import MAX_GENES, budget, gene_variance, restrict, select_genes
from multiome_assets.readers import Multiome


def _multiome(n_cells=200, n_genes=40, seed=0) -> Multiome:
    rng = np.random.default_rng(seed)
    on = rng.random((n_cells, n_genes)) < 0.5
    x = on * 1.2 ** np.arange(n_genes)  # gene i's variance grows with i
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_cells)])
    rna = ad.AnnData(sp.csr_matrix(x.astype(np.float32)), obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    atac = ad.AnnData(sp.csr_matrix((n_cells, 5), dtype=np.float32), obs=obs, var=pd.DataFrame(index=[f"p{i}" for i in range(5)]))
    return Multiome(rna, atac)


def test_variance_is_the_dense_column_variance():
    mo = _multiome()
    np.testing.assert_allclose(gene_variance(mo.rna.X), mo.rna.X.toarray().var(0), rtol=1e-5)


def test_every_tf_and_prior_gene_is_kept_and_the_most_variable_fill_the_budget():
    mo = _multiome()
    tfs = pd.Index(["g0", "g1", "not_a_gene"])  # the least variable genes
    prior = pd.DataFrame({"tf": ["g0"], "target": ["g2"]})
    table = select_genes(mo, tfs, prior, max_genes=8)
    kept = table[table.kept_as != "dropped"]
    assert len(kept) == 8
    assert table.set_index("gene").kept_as[["g0", "g1", "g2"]].tolist() == ["tf", "tf", "prior"]
    assert set(kept.gene[kept.kept_as == "variable"]) == {f"g{i}" for i in range(35, 40)}  # the 5 most variable
    assert table.variance_rank[table.gene == "g39"].item() == 1
    assert table.gene.tolist() == list(mo.rna.var_names)  # the dataset's order


def test_a_budget_smaller_than_the_tfs_and_prior_genes_drops_none_of_them():
    mo = _multiome()
    tfs = pd.Index([f"g{i}" for i in range(10)])
    prior = pd.DataFrame({"tf": ["g0", "g1"], "target": ["g20", "g21"]})
    table = select_genes(mo, tfs, prior, max_genes=3)
    assert set(table.gene[table.kept_as != "dropped"]) == {*tfs, "g20", "g21"}
    assert not (table.kept_as == "variable").any()


def test_restrict_keeps_the_selected_genes_every_cell_and_every_peak():
    mo = _multiome()
    table = select_genes(mo, pd.Index(["g3"]), pd.DataFrame({"tf": ["g3"], "target": ["g7"]}), max_genes=4)
    small = restrict(mo, table)
    assert list(small.rna.var_names) == ["g3", "g7", "g38", "g39"]
    assert small.n_cells == mo.n_cells and small.atac is mo.atac
    np.testing.assert_array_equal(small.rna.X.toarray(), mo.rna[:, ["g3", "g7", "g38", "g39"]].X.toarray())
    assert restrict(mo, select_genes(mo, pd.Index([]), pd.DataFrame({"tf": [], "target": []}), None)) is mo
    with pytest.raises(ValueError, match="rematerialize grn_genes"):
        restrict(mo, pd.DataFrame({"gene": ["elsewhere"], "kept_as": ["tf"]}))


def test_the_cpu_budget_leaves_the_bundled_datasets_whole_and_paper_keeps_every_gene():
    assert budget("paper") is None and MAX_GENES["cpu"] >= 8_595  # SNARE-seq's genes, BMMC has 600
    with pytest.raises(ValueError, match="profile"):
        budget("laptop")
