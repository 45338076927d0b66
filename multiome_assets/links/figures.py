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
