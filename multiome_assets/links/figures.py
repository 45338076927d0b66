"""The link assets' figure: distance of the top links, top links against distance-matched pairs,
expression by number of links."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from multiome_assets.files import save_figure


def link_figures(links, validation, path: str | os.PathLike, title: str = "") -> None:
    """One PNG, per method: the distance profile of the top 1,000 links (cell set `all`), the top-N
    links' pseudobulk correlation against distance-matched pairs, and mean expression by the number
    of a gene's links above the 90th-percentile score, on the held-out cells. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    (ax_d, ax_v), (ax_e, unused) = axes
    unused.remove()
    everything = links[links.cell_type == "all"]
    validation = validation[validation.cells == "held_out"] if "cells" in validation else validation
    for i, (method, mine) in enumerate(everything.groupby("method")):
        top = mine.nlargest(1000, "score")
        ax_d.hist(top.distance / 1e3, bins=25, alpha=0.5, label=f"{method} (top {len(top)})")
        v = validation[(validation.method == method) & (validation.kind == "top_vs_distance_matched")]
        x = np.arange(len(v)) + 0.38 * i
        ax_v.bar(x, v.observed, width=0.18, label=f"{method}: top N")
        ax_v.bar(x + 0.18, v.baseline, width=0.18, label=f"{method}: distance-matched", alpha=0.5)
        ax_v.set_xticks(np.arange(len(v)) + 0.27, v.subset)
        e = validation[(validation.method == method) & (validation.kind == "expression_by_links")
                       & validation.subset.str.endswith("links")]
        ax_e.plot(e.subset.str.split().str[0].str.rstrip("+").astype(int), e.observed, marker="o", label=method)
    ax_d.set(xlabel="distance to TSS (kb)", ylabel="links", title="distance of the top links")
    ax_v.set(ylabel="pseudobulk peak-gene r", title="top links vs distance-matched pairs (held-out cells)")
    ax_e.set(xlabel="links above the 90th-percentile score (10 = 10+)", ylabel="mean log expression",
             title="expression by number of links")
    for ax in (ax_d, ax_v, ax_e):
        ax.legend(frameon=False, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))


def enrichment_dotplot(table, path: str | os.PathLike, title: str = "", top: int = 5) -> bool:
    """Cell types (x) by the `top` terms of each (y, by FDR): dot size = hits, colour = -log10 FDR,
    one panel per (kind, links) selection. False (nothing written) when the table is empty."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        return False
    groups = list(table.groupby(["kind", "links"], sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(min(10, 4.5 * len(groups)), 5), squeeze=False)
    for ax, ((kind, links), rows) in zip(axes[0], groups):
        terms = rows.sort_values("fdr").groupby("cell_type").head(top).term.unique()
        shown = rows[rows.term.isin(terms)]
        types = sorted(rows.cell_type.unique())
        x = shown.cell_type.map({t: i for i, t in enumerate(types)})
        y = shown.term.map({t: i for i, t in enumerate(terms)})
        dots = ax.scatter(x, y, s=20 + 8 * np.sqrt(shown.n_hits.to_numpy()), c=-np.log10(shown.fdr.clip(lower=1e-300)),
                          cmap="viridis", vmin=0)
        ax.set_xticks(range(len(types)), types, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(terms)), terms, fontsize=7)
        ax.set_title(f"{kind}: {links}", fontsize=9)
        fig.colorbar(dots, ax=ax, label="-log10 FDR", shrink=0.6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))
    return True


def specific_cres_heatmap(specific, path: str | os.PathLike, title: str = "", per_type: int = 30) -> bool:
    """Each cell type's specific cCREs (rows, grouped by type, at most `per_type` each) by cell type
    (columns), coloured by the cCRE's scaled score in [-1, 1]. False when there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = specific[specific.specific.astype(bool)]
    if chosen.empty:
        return False
    rows = chosen.sort_values("scaled_score", ascending=False).groupby("cell_type").head(per_type)
    order = rows.sort_values(["cell_type", "scaled_score"], ascending=[True, False]).cre.to_numpy()
    wide = specific.pivot_table(index="cre", columns="cell_type", values="scaled_score").reindex(order)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * wide.shape[1], 6))
    image = ax.imshow(wide.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks([])
    ax.set_ylabel(f"specific cCREs (top {per_type} per cell type)")
    fig.colorbar(image, ax=ax, label="scaled link score", shrink=0.6)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))
    return True
