"""What the CRE–gene links say: per-cCRE scores, cell-type-specific cCREs, and checks of the links
that need no external data (Cisformer Fig. 3d, 3i and the distance profile).

- `cre_link_scores`: per cell type, each cCRE's attention link scores summed over its genes.
- `celltype_specific_cres`: per cCRE, those sums across cell types scaled to [-1, 1] (min-max),
  cut into five equal intervals, ranks 1-5; a cCRE with rank 5 in exactly one cell type is specific
  to it.
- `link_validation`, per method: the top-N links against distance-matched random in-window pairs
  (10 per link) by pseudobulk peak–gene correlation, one-sided Mann–Whitney (the paper's Fig. 3d);
  mean expression of genes by their number of links above the 90th-percentile score (Fig. 3i); the
  median distance of the top-N links. For the correlation method the first check is circular (its
  score is a correlation), which the table's `note` says.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

TOP_N = (100, 200, 500, 1000)
N_RANKS = 5
DISTANCE_BINS = 10
DECOYS_PER_PAIR = 10  # distance-matched decoys per top link: a baseline mean with a tenth of one draw's variance


def cre_link_scores(links: pd.DataFrame) -> pd.DataFrame:
    """Per (cell type, cCRE) of `links` the summed link score, with the number of genes linked."""
    return (links.groupby(["cell_type", "cre", "chrom", "start", "end"], as_index=False)
            .agg(score=("score", "sum"), n_genes=("gene", "size")))


def celltype_specific(cre_scores: pd.DataFrame) -> pd.DataFrame:
    """Per (cCRE, cell type): the score scaled to [-1, 1] across cell types, its rank 1-5, and whether
    the cCRE is specific to that type (rank 5 there and in no other type)."""
    wide = cre_scores.pivot_table(index="cre", columns="cell_type", values="score", fill_value=0.0)
    low, high = wide.min(1).to_numpy()[:, None], wide.max(1).to_numpy()[:, None]
    span = np.where(high > low, high - low, np.nan)
    scaled = 2 * (wide.to_numpy() - low) / span - 1  # NaN where a cCRE scores alike everywhere
    ranks = np.where(np.isnan(scaled), 0, np.clip(np.floor((scaled + 1) / 2 * N_RANKS) + 1, 1, N_RANKS)).astype(np.int64)
    n_top = (ranks == N_RANKS).sum(1, keepdims=True)
    out = pd.DataFrame({
        "cre": np.repeat(wide.index.to_numpy(), wide.shape[1]),
        "cell_type": np.tile(wide.columns.to_numpy(), wide.shape[0]),
        "scaled_score": scaled.ravel(), "rank": ranks.ravel(),
        "specific": ((ranks == N_RANKS) & (n_top == 1)).ravel(),
    })
    return out[out["rank"] > 0].reset_index(drop=True)


def distance_matched(pairs_distance: np.ndarray, chosen: np.ndarray, rng: np.random.Generator,
                     per_pair: int = DECOYS_PER_PAIR) -> np.ndarray:
    """(len(chosen), per_pair) random other pairs for the chosen pairs, each row from its pair's
    distance decile (of all pairs; a decile with no other pair: any other pair). Drawn in the pairs'
    index order, not `chosen`'s: the decoys depend on which pairs are chosen, not on how they rank."""
    edges = np.unique(np.quantile(pairs_distance, np.linspace(0, 1, DISTANCE_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, pairs_distance, side="right") - 1, 0, max(len(edges) - 2, 0))
    other = np.ones(len(pairs_distance), dtype=bool)
    other[chosen] = False
    pool = np.flatnonzero(other)
    pool = pool[np.argsort(bins[pool], kind="stable")]
    bounds = np.searchsorted(bins[pool], np.arange(max(len(edges), 2)))  # each decile's run in `pool`
    order = np.argsort(chosen, kind="stable")
    b = bins[chosen[order]]
    start, size = bounds[b], bounds[b + 1] - bounds[b]
    empty = size == 0
    start[empty], size[empty] = 0, len(pool)
    decoys = np.empty((len(chosen), per_pair), dtype=np.int64)
    decoys[order] = pool[start[:, None] + rng.integers(0, size[:, None], (len(chosen), per_pair))]
    return decoys


def validate(method_links: pd.DataFrame, pair_correlation: pd.Series, pairs_distance: pd.Series,
             expression: pd.Series, method: str, seed: int = 0) -> pd.DataFrame:
    """`link_validation` rows of one method's links (cell set `all`).

    pair_correlation / pairs_distance: per (gene, cre) of every in-window pair, the pseudobulk
    correlation and the distance; expression: mean log-normalized expression per gene.
    """
    rng = np.random.default_rng(seed)
    ranked = method_links[method_links.cell_type == "all"].sort_values("score", ascending=False)
    keys = pd.MultiIndex.from_frame(ranked[["gene", "cre"]])
    index = pair_correlation.index
    rows = []
    note = "circular: the score is itself a correlation" if method == "correlation" else ""
    for n in TOP_N:
        if len(ranked) < n or 2 * n > len(pairs_distance):  # decoys need a pool of other pairs
            break
        chosen = index.get_indexer(keys[:n])
        random = distance_matched(pairs_distance.to_numpy(), chosen, rng).ravel()
        top, other = pair_correlation.to_numpy()[chosen], pair_correlation.to_numpy()[random]
        top, other = top[np.isfinite(top)], other[np.isfinite(other)]
        p = stats.mannwhitneyu(top, other, alternative="greater").pvalue if len(top) and len(other) else np.nan
        rows.append({"kind": "top_vs_distance_matched", "subset": f"top {n}", "n": n, "observed": np.mean(top),
                     "baseline": np.mean(other), "pvalue": p, "note": note})
        rows.append({"kind": "median_distance_bp", "subset": f"top {n}", "n": n,
                     "observed": float(np.median(ranked.distance.to_numpy()[:n])),
                     "baseline": float(np.median(pairs_distance)), "pvalue": np.nan, "note": "baseline: all pairs"})
    if len(ranked):
        cutoff = np.quantile(ranked.score, 0.9)
        per_gene = ranked[ranked.score >= cutoff].groupby("gene").size().reindex(expression.index, fill_value=0)
        bins = np.minimum(per_gene.to_numpy(), 10)
        for b in np.unique(bins):
            genes = bins == b
            rows.append({"kind": "expression_by_links", "subset": f"{b}{'+' if b == 10 else ''} links", "n": int(genes.sum()),
                         "observed": float(expression.to_numpy()[genes].mean()), "baseline": float(expression.mean()),
                         "pvalue": np.nan, "note": "links above the 90th-percentile score; baseline: all genes"})
        test = stats.spearmanr(per_gene.to_numpy(), expression.to_numpy())
        rows.append({"kind": "expression_by_links", "subset": "spearman(links, expression)", "n": len(per_gene),
                     "observed": float(test.statistic), "baseline": np.nan, "pvalue": float(test.pvalue), "note": ""})
    table = pd.DataFrame(rows, columns=["kind", "subset", "n", "observed", "baseline", "pvalue", "note"])
    table.insert(0, "method", method)
    return table
