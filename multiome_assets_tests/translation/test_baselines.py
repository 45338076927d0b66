"""The simple translators on a sparse target: what scikit-learn gives on the dense one, without
ever densifying the training cells (a 10x run's 8,600 training cells x 90,000 cCREs)."""
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import Ridge
from sklearn.neighbors import NearestNeighbors

from multiome_assets.translation import baselines


def _data():
    rng = np.random.default_rng(0)
    z_train, z_test = rng.normal(size=(60, 6)), rng.normal(size=(9, 6))
    target = (rng.random((60, 80)) < 0.1).astype(np.float32)
    return z_train, z_test, target


def test_ridge_and_knn_on_a_sparse_target_equal_their_dense_definitions():
    z_train, z_test, target = _data()
    sparse = sp.csr_matrix(target)
    np.testing.assert_allclose(baselines.ridge(z_train, sparse, z_test),
                               Ridge(alpha=1.0).fit(z_train, target).predict(z_test), atol=1e-6)
    _, idx = NearestNeighbors(n_neighbors=15, metric="cosine").fit(z_train).kneighbors(z_test)
    np.testing.assert_allclose(baselines.knn(z_train, sparse, z_test), target[idx].mean(1), atol=1e-6)
    np.testing.assert_allclose(baselines.global_mean(sparse, 9), np.tile(target.mean(0), (9, 1)), atol=1e-6)


def test_the_cell_type_mean_reads_each_types_training_cells_and_falls_back_to_the_global_mean():
    _, _, target = _data()
    labels = np.array(["B", "T", "NK"] * 20)
    test_labels = np.array(["T", "unseen", "B"])
    got = baselines.cell_type_mean(sp.csr_matrix(target), labels, test_labels)
    np.testing.assert_allclose(got[0], target[labels == "T"].mean(0), atol=1e-6)
    np.testing.assert_allclose(got[1], target.mean(0), atol=1e-6)
    np.testing.assert_allclose(got[2], target[labels == "B"].mean(0), atol=1e-6)
