"""Statistics both methods use: tie-exact ranking metrics, hypergeometric tests, paired tests,
seeded sampling and ranking-curve figures.

Ties are handled exactly, never by index order: AUPRC is the step-wise average precision with tied
scores forming one threshold (what ``sklearn.metrics.average_precision_score`` computes), AUROC
counts a tied positive/negative pair as 1/2, and precision@K is the expectation over a uniformly
random order within the tie group straddling rank K.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from multiome_assets.files import save_figure


# ---------------------------------------------------------------------------------------
# Ranking: one sort, tie groups, cumulative counts
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankCurve:
    """Candidates in descending score order, summarised per tie group (distinct score)."""

    group_end: np.ndarray  # (T,) int: number of candidates scored >= this group's score
    tp_end: np.ndarray  # (T,) int: positives among them
    n_pos: int

    @property
    def n(self) -> int:
        return int(self.group_end[-1])


def tie_groups_desc(values_desc: np.ndarray) -> np.ndarray:
    """(n,) descending values -> (n,) int tie-group id, 0 for the highest score."""
    new = np.empty(len(values_desc), dtype=bool)
    new[:1] = True
    np.not_equal(values_desc[1:], values_desc[:-1], out=new[1:])  # != also separates ±inf
    return np.cumsum(new) - 1


def curve_from_sorted(groups_desc: np.ndarray, labels_desc: np.ndarray) -> RankCurve:
    """Tie-group ids and labels, both in descending score order."""
    ends = np.flatnonzero(np.r_[groups_desc[1:] != groups_desc[:-1], True]) + 1  # 1-based
    tp = np.cumsum(labels_desc, dtype=np.int64)[ends - 1]
    return RankCurve(ends.astype(np.int64), tp, int(tp[-1]))


def rank_curve(scores: np.ndarray, labels: np.ndarray) -> RankCurve:
    order = np.argsort(scores)[::-1]  # descending; tie order is irrelevant (tie groups)
    return curve_from_sorted(tie_groups_desc(scores[order]), labels[order])


def average_precision(c: RankCurve) -> float:
    """Σ_thresholds (recall_t − recall_{t−1}) · precision_t."""
    new_tp = np.diff(c.tp_end, prepend=0)
    return float(np.sum(new_tp * (c.tp_end / c.group_end)) / c.n_pos)


def auroc(c: RankCurve) -> float:
    """Trapezoid area under (FPR, TPR), i.e. Mann-Whitney with ties counted 1/2."""
    n_neg = c.n - c.n_pos
    fp = c.group_end - c.tp_end
    d_fp = np.diff(fp, prepend=0)
    tp_prev = np.r_[0, c.tp_end[:-1]]
    return float(np.sum(d_fp * (c.tp_end + tp_prev)) / (2.0 * c.n_pos * n_neg))


def expected_hits(c: RankCurve, k: np.ndarray) -> np.ndarray:
    """(len(k),) expected positives in the top k, ties in random order; k clipped to n."""
    k = np.clip(np.asarray(k, dtype=np.int64), 1, c.n)
    g = np.searchsorted(c.group_end, k, side="left")  # tie group holding rank k
    prev_end = np.where(g > 0, c.group_end[g - 1], 0)
    prev_tp = np.where(g > 0, c.tp_end[g - 1], 0)
    frac_pos = (c.tp_end[g] - prev_tp) / (c.group_end[g] - prev_end)
    return prev_tp + (k - prev_end) * frac_pos


def grouped_auroc(
    group: np.ndarray, ties: np.ndarray, labels: np.ndarray, n_groups: int
) -> np.ndarray:
    """AUROC within each group (row or column) of the candidates, ties counted 1/2.

    ``group``, ``ties`` (equal iff equal score) and ``labels`` are (n,) in ascending score
    order. A stable sort by group keeps that order inside each group, so the position in
    the group is the rank; tied blocks get their average rank (Mann-Whitney U).
    Returns (n_groups,), NaN where a group lacks a positive or a negative.
    """
    o = np.argsort(group, kind="stable")  # radix sort for uint16 group ids
    n_tot = np.bincount(group, minlength=n_groups)
    g = np.repeat(np.arange(n_groups, dtype=group.dtype), n_tot)  # == group[o], no gather
    t, y = ties[o], labels[o]
    new_tie = np.empty(len(g), dtype=bool)
    new_tie[0] = True
    new_tie[1:] = (g[1:] != g[:-1]) | (t[1:] != t[:-1])
    tie_start = np.flatnonzero(new_tie)
    tie_len = np.diff(np.r_[tie_start, len(g)])
    # only positives enter the rank sum: 0-based positions a..a+len-1 of a tied block share
    # the average 1-based position a + (len + 1) / 2; rank in group = position - group start
    pos = np.flatnonzero(y)
    tie_of_pos = np.searchsorted(tie_start, pos, side="right") - 1
    g_pos = g[pos]
    group_start = np.r_[0, np.cumsum(n_tot)[:-1]]
    rank = tie_start[tie_of_pos] + (tie_len[tie_of_pos] + 1) / 2.0 - group_start[g_pos]
    n_pos = np.bincount(g_pos, minlength=n_groups).astype(np.float64)
    rank_sum = np.bincount(g_pos, weights=rank, minlength=n_groups)
    n_neg = n_tot - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------
def hypergeometric_sf(hits: np.ndarray, population: np.ndarray, successes: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """P(X >= hits), X ~ Hypergeom(population, successes, draws), elementwise, clipped to [0, 1]."""
    return np.clip(stats.hypergeom.sf(np.asarray(hits) - 1, population, successes, draws), 0.0, 1.0)


def bh_fdr(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values."""
    return stats.false_discovery_control(np.asarray(pvalues, dtype=np.float64), method="bh")


def paired_comparison(diff: pd.Series) -> dict[str, float]:
    """Paired differences (one per split or seed): mean, sd, how many are > 0 of how many, and the
    two-sided Wilcoxon signed-rank p (exact for few pairs; NaN with < 2 pairs or all zero)."""
    d = diff.dropna()
    p = stats.wilcoxon(d).pvalue if len(d) >= 2 and (d != 0).any() else float("nan")
    return {"mean": float(d.mean()), "sd": float(d.std(ddof=1)) if len(d) > 1 else float("nan"),
            "ahead": int((d > 0).sum()), "n": int(d.count()), "pvalue": float(p)}


# ---------------------------------------------------------------------------------------
# Seeded sampling without replacement inside contiguous blocks
# ---------------------------------------------------------------------------------------
def sample_distinct(
    rng: np.random.Generator, sizes: np.ndarray, counts: np.ndarray, n_sets: int
) -> np.ndarray:
    """(n_sets, counts.sum()) offsets: per set, block i holds counts[i] distinct draws from
    range(sizes[i]), uniform over subsets. Rejection: fast when counts <= sizes / 2."""
    block = np.repeat(np.arange(len(sizes)), counts)  # (M,)
    M = len(block)
    if M == 0:
        return np.zeros((n_sets, 0), dtype=np.int64)
    draws = rng.integers(0, sizes[block], size=(n_sets, M))
    stride = int(sizes.max()) + 1
    base = (np.arange(n_sets)[:, None] * len(sizes) + block[None, :]) * stride  # (n_sets, M)
    while True:
        key = (base + draws).ravel()
        o = np.argsort(key, kind="stable")  # stable: the first occurrence of a value is kept
        dup = o[1:][key[o][1:] == key[o][:-1]]
        if len(dup) == 0:
            return draws
        draws.ravel()[dup] = rng.integers(0, sizes[block[dup % M]])


def sample_in_blocks(
    rng: np.random.Generator, size: np.ndarray, count: np.ndarray, n_sets: int
) -> np.ndarray:
    """(n_sets, count.sum()) positions in a concatenation of blocks (block b has size[b]
    items): per set, count[b] distinct items of block b, uniformly at random."""
    start = np.r_[0, np.cumsum(size)[:-1]]
    sparse = count <= size - count
    # blocks where few items are drawn: draw them
    b = np.flatnonzero(sparse & (count > 0))
    parts = [start[np.repeat(b, count[b])] + sample_distinct(rng, size[b], count[b], n_sets)]
    # blocks where most items are drawn: draw the ones left out
    b = np.flatnonzero(~sparse)
    if len(b):
        out = sample_distinct(rng, size[b], size[b] - count[b], n_sets)
        local_start = np.r_[0, np.cumsum(size[b])[:-1]]
        taken = np.ones((n_sets, int(size[b].sum())), dtype=bool)
        out_start = local_start[np.repeat(np.arange(len(b)), size[b] - count[b])]
        taken[np.arange(n_sets)[:, None], out_start + out] = False
        local_to_global = np.arange(int(size[b].sum())) + np.repeat(start[b] - local_start, size[b])
        parts.append(local_to_global[np.nonzero(taken)[1]].reshape(n_sets, -1))
    return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------
def curve_points(c: RankCurve, n_points: int = 2000) -> np.ndarray:
    """Indices of tie groups to draw: ≤ ~2 n_points, log- and linearly spaced in rank."""
    at = np.unique(np.r_[np.geomspace(1, c.n, n_points), np.linspace(1, c.n, n_points)].astype(np.int64))
    return np.unique(np.searchsorted(c.group_end, at, side="left"))


def plot_ranking_curves(named_scores: dict[str, np.ndarray], labels: np.ndarray, path: str | os.PathLike,
                        title: str = "") -> None:
    """One PNG with precision-recall, ROC and precision@K panels, a line per method; dashed lines
    mark chance. ``named_scores``: method -> (n,) scores of the same n items as ``labels`` (bool).
    Written atomically, two panels a row (it fits the UI's metadata dialog)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    if not named_scores:
        raise ValueError("named_scores is empty; pass {method_name: scores}")
    pos_rate = labels.mean()
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    (ax_pr, ax_roc), (ax_k, unused) = axes
    unused.remove()
    for name, scores in named_scores.items():
        c = rank_curve(scores, labels)
        ap, auc = average_precision(c), auroc(c)
        g = curve_points(c)
        tp, end = c.tp_end[g], c.group_end[g]
        ax_pr.step(np.r_[0, tp / c.n_pos], np.r_[1, tp / end], where="pre", label=f"{name} (AUPRC {ap:.3g})")
        fpr, tpr = np.r_[0, (end - tp) / (c.n - c.n_pos)], np.r_[0, tp / c.n_pos]
        ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
        k = np.unique(np.geomspace(1, c.n, 400).astype(np.int64))
        ax_k.plot(k, expected_hits(c, k) / k, label=name)
    ax_pr.axhline(pos_rate, ls="--", c="grey", lw=1, label=f"chance ({pos_rate:.2g})")
    ax_roc.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax_k.axhline(pos_rate, ls="--", c="grey", lw=1, label="chance")
    ax_pr.set(xlabel="Recall", ylabel="Precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax_k.set(xscale="log", xlabel="K (top-ranked candidates)", ylabel="Precision@K", title="Precision@K", ylim=(0, 1.02))
    for ax in (ax_pr, ax_roc, ax_k):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, Path(path))
