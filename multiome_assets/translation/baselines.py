"""Simple translators, the bars the transformer has to clear, on the same cells.

- ``global_mean``: each target feature's training mean (feature popularity), the same for every cell.
- ``knn``: the mean target profile of the k training cells nearest in a truncated SVD of the
  log1p counts (RNA; not centred, as scanpy's sparse PCA is not) or an LSI (ATAC) of the source
  modality, fitted on the training cells.
- ``ridge``: a ridge regression from that embedding to the target.
- ``cell_type_mean_oracle``: the training mean of the test cell's own cell type; it reads the test
  cells' true labels, hence an oracle (a held-out type gets the global mean).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.neighbors import NearestNeighbors

from multiome_assets.cells import cell_types


def source_embedding(source: sp.csr_matrix, train: np.ndarray, kind: str, n_components: int = 30,
                     seed: int = 0) -> np.ndarray:
    """(cells, n) embedding of every cell, fitted on the training cells: truncated SVD of log1p
    counts (kind "rna") or LSI, TF-IDF then SVD without its first (depth) component (kind "atac")."""
    x = sp.csr_matrix(source, dtype=np.float64)
    if kind == "rna":
        x = x.copy()
        x.data = np.log1p(x.data)
    else:
        x = x.copy()
        x.data[:] = 1.0
        idf = np.log1p(len(train) / (1.0 + np.asarray(x[train].sum(0)).ravel()))
        tf = sp.diags(1.0 / np.maximum(np.asarray(x.sum(1)).ravel(), 1.0)) @ x
        x = (tf @ sp.diags(idf)).tocsr()
    n = min(n_components + (kind == "atac"), min(len(train), x.shape[1]) - 1)
    svd = TruncatedSVD(n, random_state=seed).fit(x[train])
    z = svd.transform(x)
    return z[:, 1:] if kind == "atac" else z


def global_mean(target_train, n_test: int) -> np.ndarray:
    """`target_train`: (cells, features), dense or sparse (a 10x run's cCREs are never densified
    for the training cells); the baselines return dense (test cells, features)."""
    mean = np.asarray(target_train.mean(0), dtype=np.float32).reshape(1, -1)
    return np.broadcast_to(mean, (n_test, mean.shape[1])).copy()


def _row_means(target_train, groups: sp.csr_matrix) -> np.ndarray:
    """Dense (groups, features): each row of `groups` (weights over the training cells) times the target."""
    return np.asarray((groups @ sp.csr_matrix(target_train)).todense(), dtype=np.float32)


def knn(z_train: np.ndarray, target_train, z_test: np.ndarray, k: int = 15) -> np.ndarray:
    k = min(k, len(z_train))
    _, idx = NearestNeighbors(n_neighbors=k, metric="cosine").fit(z_train).kneighbors(z_test)
    weights = sp.csr_matrix((np.full(idx.size, 1.0 / k), idx.ravel(), np.arange(0, idx.size + 1, k)),
                            shape=(len(z_test), len(z_train)))
    return _row_means(target_train, weights)


def ridge(z_train: np.ndarray, target_train, z_test: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Ridge with an intercept, solved in closed form over the embedding's few dimensions:
    W = (Zc'Zc + alpha I)^-1 Zc'Y, so a sparse target stays sparse (scikit-learn's Ridge, exactly)."""
    mean_z = z_train.mean(0)
    zc = z_train - mean_z
    w = np.linalg.solve(zc.T @ zc + alpha * np.eye(zc.shape[1]), np.asarray(sp.csr_matrix(target_train).T @ zc).T)
    return (global_mean(target_train, len(z_test)) + ((z_test - mean_z) @ w)).astype(np.float32)


def cell_type_mean(target_train, labels_train: np.ndarray, labels_test: np.ndarray) -> np.ndarray:
    """Each test cell gets the training mean of its type; unlabelled cells and unseen types the global mean."""
    out = global_mean(target_train, len(labels_test))
    for label in cell_types(labels_test)[0]:
        seen = np.flatnonzero(labels_train == label)
        if len(seen):
            mean = sp.csr_matrix((np.full(len(seen), 1.0 / len(seen)), seen, [0, len(seen)]), shape=(1, len(labels_train)))
            out[labels_test == label] = _row_means(target_train, mean)
    return out
