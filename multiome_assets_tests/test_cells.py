"""One rule for unlabelled cells, everywhere: in `all` only, never a cell type of their own."""
import numpy as np
import pandas as pd
import pytest

from multiome_assets.cells import cell_labels, cell_sets
from multiome_assets.dataset import DatasetError
from multiome_assets.translation import baselines, metrics

OBS = pd.DataFrame({"cell_type": pd.Categorical(["T"] * 12 + [None] * 12 + ["B"] * 3)},
                   index=[f"c{i}" for i in range(27)])


def test_cell_sets_leave_unlabelled_cells_in_all_only():
    sets = cell_sets(cell_labels(OBS, "cell_type"), len(OBS))
    assert set(sets) == {"all", "T"}  # no 'nan'/'unlabelled' set for the 12 unlabelled cells; B has < 10 cells
    np.testing.assert_array_equal(sets["T"], np.arange(12))
    np.testing.assert_array_equal(sets["all"], np.arange(27))


def test_sampled_cell_sets_follow_the_same_rule():
    sets = cell_sets(cell_labels(OBS, "cell_type"), len(OBS), max_cells=5, seed=1)
    assert set(sets) == {"all", "T"}
    assert len(sets["all"]) == len(sets["T"]) == 5
    assert set(sets["T"]) <= set(range(12))
    # a cell type's own budget (the backbone embeddings': 500 for all, 100 per type)
    sets = cell_sets(cell_labels(OBS, "cell_type"), len(OBS), max_cells=20, max_cells_per_type=4, seed=1)
    assert len(sets["all"]) == 20 and len(sets["T"]) == 4 and set(sets["T"]) <= set(range(12))


def test_a_missing_cell_type_column_names_the_file_and_the_columns():
    with pytest.raises(DatasetError, match=r"dataset.yaml: cell_type_column 'celltype' is not a column.*'cell_type'"):
        cell_labels(OBS, "celltype", source="dataset.yaml")


def test_translation_metrics_leave_unlabelled_cells_out_of_cell_type_groups():
    labels = cell_labels(OBS, "cell_type")
    rng = np.random.default_rng(0)
    truth = rng.random((27, 6))
    # the cell-type mean oracle: a labelled cell gets its type's training mean, an unlabelled one the global mean
    got = baselines.cell_type_mean(truth, labels, labels)
    np.testing.assert_allclose(got[0], truth[:12].mean(0))
    np.testing.assert_allclose(got[15], truth.mean(0))
    # pseudobulk over the labelled types only: unlabelled cells predicted wrongly change nothing
    predicted = truth.copy()
    predicted[12:24] = rng.random((12, 6))
    assert metrics.pseudobulk_pearson(predicted, truth, labels) == pytest.approx(1.0)
    assert metrics.pseudobulk_pearson(predicted, truth, None) < 1.0
    # clustering is scored against the labelled cells' types only (two types: T and B)
    scores = metrics.clustering_scores(np.r_[np.zeros((12, 3)), rng.random((12, 3)), np.ones((3, 3))], labels)
    assert scores["ari"] == pytest.approx(1.0)

