"""Prior mapping and the two seeded splits."""
import pandas as pd
import pytest

from multiome_assets.dataset import DatasetError, reference_path
from multiome_assets.priors import map_prior, read_prior, read_tf_list, split_edges

from .conftest import BUNDLED


@pytest.fixture(scope="module")
def prior():
    return read_prior(reference_path("dorothea", BUNDLED))


def test_mapping_keeps_listed_tfs_within_genes(prior):
    tfs = read_tf_list(reference_path("lambert2018", BUNDLED))
    assert "\r" not in "".join(tfs) and len(tfs) == 1639
    genes = pd.Index(pd.concat([prior.tf, prior.target]).unique()[:3000])
    edges = map_prior(prior, genes, tfs)
    assert edges.tf.isin(tfs).all() and edges.tf.isin(genes).all() and edges.target.isin(genes).all()
    assert not (edges.tf == edges.target).any() and not edges.duplicated(["tf", "target"]).any()
    expected = prior[prior.tf.isin(tfs) & prior.tf.isin(genes) & prior.target.isin(genes) & (prior.tf != prior.target)]
    assert len(edges) == len(expected.drop_duplicates(["tf", "target"]))


def test_prior_with_no_dataset_genes(prior):
    with pytest.raises(DatasetError, match=r"dorothea\.csv: none of its"):
        map_prior(prior, pd.Index(["NOTAGENE1", "NOTAGENE2"]), pd.Index(["NOTAGENE1"]), source="dorothea.csv")


def test_prior_with_text_weights_names_the_file(tmp_path):
    path = tmp_path / "regulons.csv"
    path.write_text("source,target,weight\nSPI1,CD14,1\nGATA1,KLF1,activation\n")
    with pytest.raises(DatasetError, match=r"regulons\.csv: column weight must hold numbers; 1 rows .*'activation'"):
        read_prior(path)
    assert read_prior(reference_path("collectri", BUNDLED)).weight.isin([-1.0, 1.0]).all()


def test_splits_are_seeded_and_hold_out_whole_tfs(prior):
    edges = map_prior(prior, pd.Index(pd.concat([prior.tf, prior.target]).unique()), pd.Index(prior.tf.unique()))
    a, b, c = split_edges(edges, seed=1), split_edges(edges, seed=1), split_edges(edges, seed=2)
    assert a.equals(b) and not a.split_random.equals(c.split_random)
    assert abs((a.split_random == "test").mean() - 0.2) < 0.01
    held = set(a.tf[a.split_tf_heldout == "test"])
    kept = set(a.tf[a.split_tf_heldout == "train"])
    assert held and not held & kept
    assert abs(len(held) / a.tf.nunique() - 0.2) < 0.02


def test_prior_versions_count_what_a_new_version_added_and_removed():
    import pandas as pd

    from multiome_assets.priors import VERSION_COLUMNS, append_version

    v1 = pd.DataFrame({"tf": ["A", "A", "B"], "target": ["x", "y", "x"]})
    history = append_version(pd.DataFrame(columns=VERSION_COLUMNS), v1, "dorothea.csv", "h1", None, "t1")
    assert history[["content_hash", "edges", "tfs"]].values.tolist() == [["h1", 3, 2]]
    assert history.edges_added.isna().all()  # nothing before it to compare with
    assert append_version(history, v1, "dorothea.csv", "h1", v1, "t2").equals(history)  # the same content again
    v2 = pd.DataFrame({"tf": ["A", "B", "C"], "target": ["x", "x", "z"]})
    history = append_version(history, v2, "dorothea.csv", "h2", v1, "t3")
    assert history.iloc[-1][["content_hash", "first_seen", "edges", "tfs", "edges_added", "edges_removed"]].tolist() == \
        ["h2", "t3", 3, 3, 1, 1]  # C->z added, A->y removed


def test_metrics_history_keeps_each_prior_versions_metrics():
    import pandas as pd

    from multiome_assets.priors import metrics_at_version

    first = pd.DataFrame({"method": ["head", "grnboost2"], "split": "random", "auroc": [0.8, 0.7], "other": 1})
    history = metrics_at_version(pd.DataFrame(columns=["content_hash"]), first, "h1")
    assert history.columns.tolist() == ["content_hash", "method", "split", "auroc"]
    again = metrics_at_version(history, first.assign(auroc=[0.81, 0.7]), "h1")  # the same version re-evaluated
    assert again.auroc.tolist() == [0.81, 0.7]
    later = metrics_at_version(again, first.assign(auroc=[0.75, 0.71]), "h2")
    assert later.groupby("content_hash").auroc.apply(list).to_dict() == {"h1": [0.81, 0.7], "h2": [0.75, 0.71]}
