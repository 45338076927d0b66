"""What the GRN assets store survives the warehouse as plain data, read back with weights_only."""
import numpy as np
import pandas as pd
import pytest
import torch

from multiome_assets import warehouse
from multiome_assets.grn.artifacts import (
    HEAD_INPUTS,
    BaselineScores,
    EdgeHeads,
    GeneEmbeddings,
    HeadKey,
)
from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.head import (
    edge_head_checkpoint,
    load_edge_head,
    score_all_pairs,
    train_edge_head,
)
from multiome_assets.models.edge_head import EdgeHeadConfig


def _round_trip(obj, tmp_path):
    path = warehouse.write_artifact("some_asset", "toy", obj, root=tmp_path)
    assert torch.load(path, weights_only=True)["artifact"] == f"{type(obj).__module__}:{type(obj).__qualname__}"
    return warehouse.read_artifact(path)


@pytest.mark.parametrize("epochs", [2, 0])
def test_heads_come_back_scoring_the_same(tmp_path, epochs):
    rng = np.random.default_rng(0)
    genes = np.array([f"g{i}" for i in range(12)], dtype=object)
    space = EdgeSpace.from_edges(genes[:3], genes, pd.DataFrame({"tf": ["g0", "g1", "g2"], "target": ["g5", "g6", "g7"]}),
                                 pd.DataFrame({"tf": [], "target": []}))
    z = rng.normal(size=(12, 4)).astype(np.float32)
    config = EdgeHeadConfig(epochs=epochs, min_steps=0, degree_features=("in",))
    head, history = train_edge_head(z, space.regulator_gene_index, space.train, config)
    key = HeadKey(HEAD_INPUTS[-2], "bce", "random")  # rna_only + degrees
    heads = EdgeHeads(genes[:3], {key: edge_head_checkpoint(head)}, history.assign(head="rna_only+degree/bce/random"),
                      {"seed": 42})
    back = _round_trip(heads, tmp_path)
    assert list(back.heads) == [key]
    pd.testing.assert_frame_equal(back.history, heads.history, check_dtype=epochs > 0)  # no epoch: no dtype
    expected = score_all_pairs(head, z, space.regulator_gene_index)
    np.testing.assert_array_equal(score_all_pairs(load_edge_head(back.heads[key]), z, space.regulator_gene_index), expected)


def test_embeddings_and_baselines_come_back_equal(tmp_path):
    sets = {"all": np.arange(5), "T cell": np.array([1, 3])}
    emb = GeneEmbeddings(["a", "b"], sets, {"full": {k: np.full((2, 3), i, np.float32) for i, k in enumerate(sets)}}, "cpu")
    back = _round_trip(emb, tmp_path)
    assert back.genes == emb.genes and back.profile == "cpu"
    np.testing.assert_array_equal(back.cell_sets["T cell"], sets["T cell"])
    np.testing.assert_array_equal(back.embeddings["full"]["T cell"], emb.embeddings["full"]["T cell"])
    scores = BaselineScores(np.array(["a"], dtype=object), np.array(["a", "b"], dtype=object),
                            {"pearson": np.array([[1.0, 0.5]], np.float32)})
    back = _round_trip(scores, tmp_path)
    assert list(back.regulators) == ["a"] and back.scores["pearson"].tolist() == [[1.0, 0.5]]


def test_an_unknown_object_is_refused_naming_the_asset(tmp_path):
    with pytest.raises(TypeError, match="asset 'some_asset' returned dict"):
        warehouse.write_artifact("some_asset", "toy", {"model": 1}, root=tmp_path)
