"""Figures for the asset pages that more than one group draws: each method against its baselines."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from multiome_assets.files import save_figure

KIND_COLOURS = {"transformer": "#1f77b4", "ablation": "#9ecae1", "baseline": "#ff7f0e", "degree_baseline": "#bdbdbd",
                "external": "#2ca02c", "measured": "#7f7f7f"}


def method_bars(panels: dict[str, pd.Series], kinds: dict[str, str], path: str | os.PathLike, *, ylabel: str,
                title: str = "") -> None:
    """One horizontal bar chart per panel (title -> value per method, best on top), bars coloured by
    the method's kind (transformer, baseline, ...); a PNG at most 1,000 px wide, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(len(v) for v in panels.values()) if panels else 1
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 1.2 + 0.28 * n_rows),
                             squeeze=False)
    for ax, (name, values) in zip(axes[0], panels.items()):
        values = values.dropna().sort_values()
        ax.barh(values.index, values.to_numpy(),
                color=[KIND_COLOURS.get(kinds.get(m, ""), "#d62728") for m in values.index])
        ax.set(title=name, xlabel=ylabel)
        ax.tick_params(axis="y", labelsize=7)
        if len(values):
            low, high = float(values.min()), float(values.max())
            pad = 0.15 * (high - low) if high > low else 0.05
            ax.set_xlim(low - pad, high + pad)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))
