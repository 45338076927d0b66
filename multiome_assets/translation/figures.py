"""A UMAP of measured and translated profiles of the same cells, embedded together: where the
translation is faithful, each cell's two profiles land together and cell types separate alike."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from multiome_assets.files import save_figure


def umap_measured_vs_translated(measured: np.ndarray, translated: np.ndarray, labels: np.ndarray | None,
                                path: str | os.PathLike, title: str = "", seed: int = 0) -> None:
    """One PNG: the joint UMAP (of a 30-component PCA of both, each scaled per feature) coloured by
    measured/translated, and by cell type where there are labels. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap
    from sklearn.decomposition import PCA


    both = np.vstack([measured, translated]).astype(np.float32)
    both = (both - both.mean(0)) / (both.std(0) + 1e-6)
    z = PCA(min(30, *both.shape) - 1 or 1, random_state=seed).fit_transform(both)
    xy = umap.UMAP(n_neighbors=min(15, len(z) - 1), random_state=seed, n_jobs=1).fit_transform(z)
    n = len(measured)
    panels = 1 if labels is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 5), squeeze=False)
    ax = axes[0, 0]
    for part, name, colour in ((slice(0, n), "measured", "#1f77b4"), (slice(n, None), "translated", "#ff7f0e")):
        ax.scatter(xy[part, 0], xy[part, 1], s=6, c=colour, label=name, alpha=0.7, linewidths=0)
    ax.set(title="measured vs translated", xticks=[], yticks=[])
    ax.legend(markerscale=3, frameon=False)
    if labels is not None:
        ax = axes[0, 1]
        kinds = np.where(np.r_[labels, labels] == None, "unlabelled", np.r_[labels, labels]).astype(str)  # noqa: E711
        for i, label in enumerate(np.unique(kinds)):
            at = kinds == label
            ax.scatter(xy[at, 0], xy[at, 1], s=6, color=plt.cm.tab20(i % 20), label=label, alpha=0.7, linewidths=0)
        ax.set(title="cell type (both profiles)", xticks=[], yticks=[])
        ax.legend(markerscale=3, frameon=False, fontsize=6, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))
