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
from sklearn.linear_model import Ridge
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


def global_mean(target_train: np.ndarray, n_test: int) -> np.ndarray:
    return np.broadcast_to(target_train.mean(0, keepdims=True), (n_test, target_train.shape[1])).copy()


def knn(z_train: np.ndarray, target_train: np.ndarray, z_test: np.ndarray, k: int = 15) -> np.ndarray:
    nn = NearestNeighbors(n_neighbors=min(k, len(z_train)), metric="cosine").fit(z_train)
    _, idx = nn.kneighbors(z_test)
    return target_train[idx].mean(1)


def ridge(z_train: np.ndarray, target_train: np.ndarray, z_test: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return Ridge(alpha=alpha).fit(z_train, target_train).predict(z_test)


def cell_type_mean(target_train: np.ndarray, labels_train: np.ndarray, labels_test: np.ndarray) -> np.ndarray:
    """Each test cell gets the training mean of its type; unlabelled cells and unseen types the global mean."""
    out = global_mean(target_train, len(labels_test))
    for label in cell_types(labels_test)[0]:
        seen = labels_train == label
        if seen.any():
            out[labels_test == label] = target_train[seen].mean(0)
    return out
