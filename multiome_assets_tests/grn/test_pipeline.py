"""Split semantics of the evaluation spaces, and the exported top-target tables."""
import numpy as np
import pandas as pd
import pytest

from multiome_assets.grn import pipeline
from multiome_assets.grn.artifacts import BaselineScores, GeneEmbeddings, HeadInput
from multiome_assets.grn.baselines import degree_baselines
from multiome_assets.grn.metrics import evaluate
from multiome_assets.priors import split_edges


def _prior(rng, n_tfs=20, n_genes=200, n_edges=600):
    genes = pd.Index([f"g{i}" for i in range(n_genes)])
    tf = rng.integers(0, n_tfs, n_edges)
    # hub targets: a few genes are everyone's target, as in real priors
    target = np.where(rng.random(n_edges) < 0.5, rng.integers(n_tfs, n_tfs + 10, n_edges), rng.integers(n_tfs, n_genes, n_edges))
    edges = pd.DataFrame({"tf": genes[tf], "target": genes[target], "weight": 1.0}).drop_duplicates(["tf", "target"])
    return genes, split_edges(edges.reset_index(drop=True), seed=0)


def test_random_split_space(rng):
    genes, edges = _prior(rng)
    space = pipeline.edge_space(edges, genes, "random")
    assert set(space.regulators) == set(edges.tf)
    assert space.train.sum() == (edges.split_random == "train").sum()
    assert space.test.sum() == (edges.split_random == "test").sum()
    assert not space.train.multiply(space.test).nnz


def test_tf_heldout_space_keeps_target_popularity(rng):
    genes, edges = _prior(rng)
    space = pipeline.edge_space(edges, genes, "tf_heldout")
    held = set(edges.tf[edges.split_tf_heldout == "test"])
    assert set(space.regulators) == held and space.train.sum() == 0
    train = edges[edges.split_tf_heldout == "train"]
    expected = train.target.value_counts().reindex(genes, fill_value=0).to_numpy()
    np.testing.assert_array_equal(space.target_in_degree, expected)
    # so the target in-degree baseline is informative for unseen regulators, TF out-degree is not
    degree = degree_baselines(space)
    assert evaluate(degree["degree_target_in"], space, n_random=0)["auroc"] > 0.6
    assert evaluate(degree["degree_tf_out"], space, n_random=0)["auroc"] == 0.5


def test_top_targets_excludes_self_and_ranks(rng):
    genes = np.array(["a", "b", "c", "d"], dtype=object)
    regs = np.array(["b", "d"], dtype=object)
    scores = np.array([[0.1, 9.0, 0.5, 0.3], [0.2, 0.4, 0.6, 9.0]])
    table = pipeline.top_targets(scores, regs, genes, top=2)
    assert table.values.tolist() == [["b", "c", np.float32(0.5), 1], ["b", "d", np.float32(0.3), 2],
                                     ["d", "c", np.float32(0.6), 1], ["d", "b", np.float32(0.4), 2]]
    assert len(pipeline.top_targets(scores, regs, genes, top=None)) == 2 * 3


def test_scores_in_another_gene_order_are_refused(rng):
    # method_scores reads score columns as the multiome's genes: a baseline table built on
    # another gene order would misalign every column silently
    genes, edges = _prior(rng)
    space = pipeline.edge_space(edges, genes, "random")
    scores = {"pearson": rng.random((len(space.regulators), len(genes)))}
    embeddings = GeneEmbeddings(list(genes), {}, {})
    baselines = BaselineScores(space.regulators, np.asarray(genes[::-1]), scores)
    with pytest.raises(ValueError, match="grn_baselines has other genes"):
        pipeline.method_scores(space, "random", embeddings, None, baselines, [], "cpu", inputs=())
    baselines.genes = np.asarray(genes)
    assert set(pipeline.method_scores(space, "random", embeddings, None, baselines, [], "cpu", inputs=())) == {
        "pearson", "degree_tf_out", "degree_target_in", "degree_product"}


def test_degree_heads_read_what_their_names_say():
    emb = GeneEmbeddings(["a", "b", "c"], {}, {"full": {"all": np.ones((3, 4), dtype=np.float32)},
                                               "rna_only": {"all": np.zeros((3, 2), dtype=np.float32)}})
    full_degree, degree, rna_only_degree = (HeadInput.from_name(n) for n in ("full+degree", "degree", "rna_only+degree"))
    assert emb.of(full_degree).shape == (3, 4)
    assert emb.of(degree).shape == (3, 0)
    assert emb.of(rna_only_degree).shape == (3, 2)
    assert full_degree.method("bce") == "epiawarenet_bce_degree"
    assert degree.method("nnpu") == "mlp_degree_nnpu"
    assert HeadInput("rna_only").method("bce") == "epiawarenet_bce_rna_only"
    assert HeadInput("svd").method("bce") == "mlp_svd_bce"
    assert rna_only_degree.method("nnpu") == "epiawarenet_nnpu_rna_only_degree"
    # unseen regulators have out-degree 0 by construction: on that split degree heads read in-degree only
    assert full_degree.degree_kinds("tf_heldout") == ("in",)
    assert degree.degree_kinds("random") == ("out", "in")
    assert HeadInput("full").degree_kinds("random") == ()
    with pytest.raises(ValueError, match=r"unknown head input 'full\+degrees'"):
        HeadInput.from_name("full+degrees")


def test_external_grns_keep_their_own_names(rng, tmp_path):
    genes, edges = _prior(rng)
    space = pipeline.edge_space(edges, genes, "random")
    table = pd.DataFrame({"TF": space.regulators[:2], "Gene": genes[-2:], "w": [1.0, 2.0]})
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        table.to_csv(tmp_path / folder / "grn.csv", index=False)
    columns = {"source_col": "TF", "target_col": "Gene", "score_col": "w"}
    same_stem = [{"path": str(tmp_path / f / "grn.csv"), **columns} for f in ("a", "b")]
    baselines = BaselineScores(space.regulators, np.asarray(genes), {})
    embeddings = GeneEmbeddings(list(genes), {}, {})
    # two files called grn.csv would overwrite each other's row in grn_metrics
    with pytest.raises(ValueError, match="two external GRNs are named 'external_grn'"):
        pipeline.method_scores(space, "random", embeddings, None, baselines, same_stem, "cpu", inputs=())
    named = [same_stem[0] | {"name": "scenicplus"}, same_stem[1] | {"name": "celloracle"}]
    got = pipeline.method_scores(space, "random", embeddings, None, baselines, named, "cpu", inputs=())
    assert {"external_scenicplus", "external_celloracle"} <= set(got)
    assert got["external_scenicplus"][1, len(genes) - 1] == 2.0
