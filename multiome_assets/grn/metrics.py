"""Evaluation of a GRN score matrix against held-out prior edges.

The EpiAwareNet paper's evaluation (``evaluate/epiaware_metrics.py``,
``evaluate/unified_baseline_eval.py``, ``evaluate/random_network_pvalue.py`` in
tianyang-x/EpiAwareNet_pub), with its two leaks removed:

- the candidate space is ``regulators × genes`` minus self-loops minus *training* positives
  (the reference ranks every scored pair, so training edges count as easy negatives or
  leak in as positives);
- nothing is tuned on held-out edges (the reference picks network cut-offs from the
  held-out precision-recall curve and reports metrics on those same edges).

Labels are ``space.test`` restricted to the candidates. Every metric reads a dense
``(R, G)`` score matrix; scores on non-candidates are ignored.

Ties are handled exactly, never by index order: AUPRC is the step-wise average precision
with tied scores forming one threshold (what ``sklearn.metrics.average_precision_score``
computes), AUROC counts a tied positive/negative pair as 1/2, and precision@K is the
expectation over a uniformly random order within the tie group straddling rank K.

Degree-controlled metrics answer "does the method beat target/regulator popularity?":

- ``per_target_auroc_macro`` ranks the regulators of one target gene, so a score that
  depends only on the target scores exactly 0.5;
- ``per_regulator_auroc_macro`` ranks the candidate targets of one regulator;
- ``degree_matched_*`` restrict to negatives drawn to match the positives' training-degree
  bins (see :func:`degree_matched_mask`);
- ``random_network_pvalue_*`` compare to held-out networks re-wired at random with the
  regulators' held-out out-degrees kept.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from multiome_assets.grn.edge_space import EdgeSpace

__all__ = [
    "curves_png",
    "degree_matched_mask",
    "enrichment_summary",
    "evaluate",
    "regulator_enrichment",
    "training_degrees",
]


# ---------------------------------------------------------------------------------------
# Ranked candidates: one sort, tie groups, cumulative counts
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Curve:
    """Candidates in descending score order, summarised per tie group (distinct score)."""

    group_end: np.ndarray  # (T,) int: number of candidates scored >= this group's score
    tp_end: np.ndarray  # (T,) int: positives among them
    n_pos: int

    @property
    def n(self) -> int:
        return int(self.group_end[-1])


def _tie_groups_desc(values_desc: np.ndarray) -> np.ndarray:
    """(n,) descending values -> (n,) int tie-group id, 0 for the highest score."""
    new = np.empty(len(values_desc), dtype=bool)
    new[:1] = True
    np.not_equal(values_desc[1:], values_desc[:-1], out=new[1:])  # != also separates ±inf
    return np.cumsum(new) - 1


def _curve_from_sorted(groups_desc: np.ndarray, labels_desc: np.ndarray) -> _Curve:
    """Tie-group ids and labels, both in descending score order."""
    ends = np.flatnonzero(np.r_[groups_desc[1:] != groups_desc[:-1], True]) + 1  # 1-based
    tp = np.cumsum(labels_desc, dtype=np.int64)[ends - 1]
    return _Curve(ends.astype(np.int64), tp, int(tp[-1]))


def _curve(scores: np.ndarray, labels: np.ndarray) -> _Curve:
    order = np.argsort(scores)[::-1]  # descending; tie order is irrelevant (tie groups)
    return _curve_from_sorted(_tie_groups_desc(scores[order]), labels[order])


def _average_precision(c: _Curve) -> float:
    """Σ_thresholds (recall_t − recall_{t−1}) · precision_t."""
    new_tp = np.diff(c.tp_end, prepend=0)
    return float(np.sum(new_tp * (c.tp_end / c.group_end)) / c.n_pos)


def _auroc(c: _Curve) -> float:
    """Trapezoid area under (FPR, TPR), i.e. Mann-Whitney with ties counted 1/2."""
    n_neg = c.n - c.n_pos
    fp = c.group_end - c.tp_end
    d_fp = np.diff(fp, prepend=0)
    tp_prev = np.r_[0, c.tp_end[:-1]]
    return float(np.sum(d_fp * (c.tp_end + tp_prev)) / (2.0 * c.n_pos * n_neg))


def _expected_hits(c: _Curve, k: np.ndarray) -> np.ndarray:
    """(len(k),) expected positives in the top k, ties in random order; k clipped to n."""
    k = np.clip(np.asarray(k, dtype=np.int64), 1, c.n)
    g = np.searchsorted(c.group_end, k, side="left")  # tie group holding rank k
    prev_end = np.where(g > 0, c.group_end[g - 1], 0)
    prev_tp = np.where(g > 0, c.tp_end[g - 1], 0)
    frac_pos = (c.tp_end[g] - prev_tp) / (c.group_end[g] - prev_end)
    return prev_tp + (k - prev_end) * frac_pos


def _check(scores: np.ndarray, space: EdgeSpace) -> None:
    if scores.shape != space.shape:
        raise ValueError(f"scores have shape {scores.shape}, edge space is {space.shape}")
    if np.isnan(scores).any():
        raise ValueError(f"scores contain {int(np.isnan(scores).sum())} NaN; use -inf for 'no score'")


def _candidates(space: EdgeSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-major flat indices (n,) of the candidates, their labels (n,) and the mask (R, G)."""
    cand = space.candidate_mask()
    flat = np.flatnonzero(cand)
    labels = space.test.toarray().ravel()[flat]
    return flat, labels, cand


# ---------------------------------------------------------------------------------------
# Degree-controlled metrics
# ---------------------------------------------------------------------------------------
def training_degrees(space: EdgeSpace) -> tuple[np.ndarray, np.ndarray]:
    """Training-prior degrees: ``out_degree`` (R,) per regulator, ``in_degree`` (G,) per gene.

    These are the popularity signals a degree baseline exploits; held-out edges never
    enter them.
    """
    train = space.train.astype(np.int64)
    return np.asarray(train.sum(axis=1)).ravel(), np.asarray(train.sum(axis=0)).ravel()


def _grouped_auroc(
    group: np.ndarray, ties: np.ndarray, labels: np.ndarray, n_groups: int
) -> np.ndarray:
    """AUROC within each group (row or column) of the candidates, ties counted 1/2.

    ``group``, ``ties`` (equal iff equal score) and ``labels`` are (n,) in ascending score
    order. A stable sort by group keeps that order inside each group, so the position in
    the group is the rank; tied blocks get their average rank (Mann-Whitney U).
    Returns (n_groups,), NaN where a group lacks a positive or a negative.
    """
    o = np.argsort(group, kind="stable")  # radix sort for uint16 group ids
    g, t, y = group[o], ties[o], labels[o]
    n = len(g)
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_tie = new_group | np.r_[True, t[1:] != t[:-1]]
    tie_start = np.flatnonzero(new_tie)
    tie_len = np.diff(np.r_[tie_start, n])
    # positions a..a+len-1 (0-based) share the average 1-based position a + (len + 1) / 2
    avg_pos = np.repeat(tie_start + (tie_len + 1) / 2.0, tie_len)
    n_tot = np.bincount(g, minlength=n_groups)
    n_pos = np.bincount(g, weights=y, minlength=n_groups)
    group_start = np.zeros(n_groups, dtype=np.int64)
    group_start[g[new_group]] = np.flatnonzero(new_group)
    # rank within group = global position - group start
    rank_sum = np.bincount(g, weights=avg_pos * y, minlength=n_groups) - group_start * n_pos
    n_neg = n_tot - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def _log2_bin(degree: np.ndarray) -> np.ndarray:
    """floor(log2(degree + 1)), exactly: bins {0}, {1, 2}, {3..6}, {7..14}, ..."""
    return np.frexp(np.asarray(degree, dtype=np.float64) + 1.0)[1] - 1


def _rank_within_cell(rng: np.random.Generator, cell: np.ndarray) -> np.ndarray:
    """(n,) uniformly random rank 0..n_c-1 of each item among the items of its cell."""
    perm = rng.permutation(len(cell))
    o = perm[np.argsort(cell[perm], kind="stable")]  # by cell, random order inside
    c = cell[o]
    start = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    size = np.diff(np.r_[start, len(c)])
    rank = np.empty(len(cell), dtype=np.int64)
    rank[o] = np.arange(len(c)) - np.repeat(start, size)
    return rank


def degree_matched_mask(
    space: EdgeSpace, *, negatives_per_positive: int = 10, seed: int | np.random.SeedSequence = 0
) -> np.ndarray:
    """(R, G) bool: candidates kept for the degree-matched evaluation.

    Procedure:

    1. Each candidate (r, t) gets the cell ``(floor(log2(1 + out_r)), floor(log2(1 + in_t)))``
       of its regulator's training out-degree and its target's training in-degree
       (:func:`training_degrees`); bins are {0}, {1, 2}, {3..6}, {7..14}, ...
    2. In each cell with ``p`` held-out positives and ``q`` negatives, keep
       ``p' = min(p, q // m)`` positives and exactly ``m · p'`` negatives
       (``m = negatives_per_positive``), both drawn uniformly at random (seeded).

    Every cell then holds m negatives per positive, so negatives and positives have the
    same cell distribution and the positive rate is exactly ``1 / (1 + m)``; a score that
    depends only on the cell has AUROC exactly 0.5. Positives are dropped only in cells
    short of negatives (dense hub × hub corners).
    """
    if negatives_per_positive < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}")
    m = int(negatives_per_positive)
    flat, labels, _ = _candidates(space)
    R, G = space.shape
    out_deg, in_deg = training_degrees(space)
    bin_r, bin_t = _log2_bin(out_deg), _log2_bin(in_deg)
    n_bins_t = int(bin_t.max()) + 1
    cell = (bin_r[flat // G] * n_bins_t + bin_t[flat % G]).astype(np.int64)
    n_cells = int(cell.max()) + 1 if len(cell) else 0
    n_pos = np.bincount(cell[labels], minlength=n_cells)
    n_neg = np.bincount(cell[~labels], minlength=n_cells)
    keep_pos = np.minimum(n_pos, n_neg // m)
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(flat), dtype=bool)
    for is_pos, quota in ((True, keep_pos), (False, m * keep_pos)):
        idx = np.flatnonzero(labels == is_pos)
        keep[idx] = _rank_within_cell(rng, cell[idx]) < quota[cell[idx]]
    mask = np.zeros(R * G, dtype=bool)
    mask[flat[keep]] = True
    return mask.reshape(R, G)


# ---------------------------------------------------------------------------------------
# Degree-preserving random networks
# ---------------------------------------------------------------------------------------
def _sample_distinct(
    rng: np.random.Generator, sizes: np.ndarray, counts: np.ndarray, n_sets: int
) -> np.ndarray:
    """(n_sets, counts.sum()) offsets: per set, block i holds counts[i] distinct draws from
    range(sizes[i]), uniform over subsets. Requires counts <= sizes / 2 (fast rejection)."""
    block = np.repeat(np.arange(len(sizes)), counts)  # (M,)
    M = len(block)
    if M == 0:
        return np.zeros((n_sets, 0), dtype=np.int64)
    draws = rng.integers(0, sizes[block], size=(n_sets, M))
    stride = int(sizes.max()) + 1
    base = (np.arange(n_sets)[:, None] * len(sizes) + block[None, :]) * stride  # (n_sets, M)
    while True:
        key = (base + draws).ravel()
        o = np.argsort(key, kind="stable")  # stable: first occurrence of a value is kept
        dup = o[1:][key[o][1:] == key[o][:-1]]
        if len(dup) == 0:
            return draws
        draws.ravel()[dup] = rng.integers(0, sizes[block[dup % M]])


def _random_positive_sets(
    rng: np.random.Generator, rows: np.ndarray, labels: np.ndarray, R: int, n_sets: int
) -> np.ndarray:
    """(n_sets, P) candidate indices: per regulator, as many candidate targets as it has
    held-out positives, uniformly without replacement. Candidates are in row-major order."""
    size = np.bincount(rows, minlength=R)
    count = np.bincount(rows[labels], minlength=R)
    row_start = np.r_[0, np.cumsum(size)[:-1]]
    sparse = count <= size - count
    parts = []
    # rows with few positives: draw the positives
    r = np.flatnonzero(sparse & (count > 0))
    parts.append(row_start[np.repeat(r, count[r])] + _sample_distinct(rng, size[r], count[r], n_sets))
    # rows with mostly positives: draw the negatives, keep the rest
    r = np.flatnonzero(~sparse)
    if len(r):
        neg = _sample_distinct(rng, size[r], size[r] - count[r], n_sets)
        local_start = np.r_[0, np.cumsum(size[r])[:-1]]
        taken = np.ones((n_sets, int(size[r].sum())), dtype=bool)
        taken[np.arange(n_sets)[:, None], local_start[np.repeat(np.arange(len(r)), size[r] - count[r])] + neg] = False
        local_to_global = np.arange(int(size[r].sum())) + np.repeat(row_start[r] - local_start, size[r])
        parts.append(local_to_global[np.nonzero(taken)[1]].reshape(n_sets, -1))
    return np.concatenate(parts, axis=1)


def _ap_auroc_of_sets(
    pos_groups: np.ndarray, group_end: np.ndarray, avg_rank: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """AUPRC and AUROC of (S, P) positive sets given as descending tie-group ids.

    AP = (1/P) Σ_positives TP(≤ its group) / group_end; AUROC sums the positives' average
    ascending ranks (Mann-Whitney). Same values as :func:`_average_precision`/:func:`_auroc`.
    """
    S, P = pos_groups.shape
    g = np.sort(pos_groups, axis=1)
    n_groups = len(group_end)
    flat = (g + np.arange(S)[:, None] * n_groups).ravel()
    tp_through = (np.searchsorted(flat, flat, side="right").reshape(S, P) - np.arange(S)[:, None] * P)
    ap = (tp_through / group_end[g]).sum(axis=1) / P
    auroc = (avg_rank[g].sum(axis=1) - P * (P + 1) / 2.0) / (P * (n - P))
    return ap, auroc


# ---------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------
def evaluate(
    scores: np.ndarray,
    space: EdgeSpace,
    *,
    ks: tuple[int, ...] = (100, 500, 1000),
    n_random: int = 100,
    top_n: int = 100,
    seed: int = 0,
    negatives_per_positive: int = 10,
) -> dict[str, float]:
    """Score a (R, G) matrix against the held-out edges of `space`.

    Parameters
    ----------
    scores
        (R, G) float, higher = more likely an edge; values on self-loops and training
        positives are ignored. NaN is rejected (use -inf).
    space
        Candidates = not self-loop and not training positive; labels = ``space.test``
        on the candidates.
    ks
        Cut-offs for ``precision_at_{k}``, ``hit_at_{k}``, ``recall_at_{k}``; a k larger than
        the number of candidates is clipped to it.
    n_random
        Number of degree-preserving random held-out networks for the p-values (0: skip,
        p-values are NaN).
    top_n
        N of the per-regulator top-N hypergeometric enrichment (``enrichment_*`` keys,
        see :func:`regulator_enrichment`).
    seed
        Seeds the degree-matched sampling, the random networks and enrichment tie-breaks.
    negatives_per_positive
        m of :func:`degree_matched_mask`.

    Returns
    -------
    Flat dict of floats:

    - ``auprc`` (average precision), ``auroc``, ``positive_rate`` (positives / candidates),
      ``auprc_ratio`` (AUPRC / positive rate; 1 = random);
    - ``precision_at_{k}``; ``hit_at_{k}``: the *number* of held-out positives among the
      top k (not the 0/1 "any hit" indicator, which is ~always 1 with thousands of
      positives; the reference code has no Hit@K, only precision/recall@k);
      ``recall_at_{k}`` = hit_at_{k} / n_positives. With tied scores across rank k these
      are expectations over a random order of the tied pairs;
    - ``early_precision_ratio``: precision in the top n_positives / positive rate;
    - ``per_target_auroc_macro`` (+ ``n_targets_evaluated``): mean over targets with ≥1
      positive and ≥1 negative candidate of the AUROC ranking that target's regulators;
      ``per_regulator_auroc_macro`` (+ ``n_regulators_evaluated``): same per regulator;
    - ``degree_matched_auroc``, ``degree_matched_auprc``, ``degree_matched_auprc_ratio``,
      ``degree_matched_n_positives`` on :func:`degree_matched_mask`;
    - ``random_network_pvalue_auprc``/``_auroc``: regulators keep their number of held-out
      candidate targets, which are redrawn uniformly among the regulator's candidate
      targets; p = (1 + #{random ≥ observed}) / (n_random + 1). Also
      ``random_network_auprc_mean``;
    - ``enrichment_*`` from :func:`enrichment_summary`;
    - ``n_candidates``, ``n_positives``, ``n_test_not_candidate`` (held-out edges dropped
      because they are self-loops or training positives).

    Examples
    --------
    >>> m = evaluate(scores, space, ks=(100,), n_random=100)
    >>> m["auprc_ratio"], m["per_target_auroc_macro"], m["random_network_pvalue_auprc"]
    """
    _check(scores, space)
    R, G = space.shape
    flat, labels, cand = _candidates(space)
    n, n_pos = len(flat), int(labels.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError(
            f"{n_pos} of {n} candidates are held-out positives; need both positives and "
            "negatives (check that space.test is not inside space.train)"
        )
    s = np.asarray(scores, dtype=np.float64).ravel()[flat]

    # one sort: descending order, tie groups, curve
    order = np.argsort(s)[::-1]
    groups_desc = _tie_groups_desc(s[order])
    curve = _curve_from_sorted(groups_desc, labels[order])
    pos_rate = n_pos / n
    out: dict[str, float] = {
        "n_candidates": float(n),
        "n_positives": float(n_pos),
        "n_test_not_candidate": float(space.test.nnz - n_pos),
        "positive_rate": pos_rate,
    }
    out["auprc"] = _average_precision(curve)
    out["auroc"] = _auroc(curve)
    out["auprc_ratio"] = out["auprc"] / pos_rate
    hits = _expected_hits(curve, np.r_[list(ks), n_pos])
    for k, h in zip(ks, hits[:-1]):
        k_eff = min(int(k), n)
        out[f"precision_at_{k}"] = float(h / k_eff)
        out[f"hit_at_{k}"] = float(h)
        out[f"recall_at_{k}"] = float(h / n_pos)
    out["early_precision_ratio"] = float(hits[-1] / n_pos / pos_rate)

    # per-target / per-regulator AUROC, in ascending score order
    asc = order[::-1]
    ties_asc = groups_desc[::-1]
    gdtype = np.uint16 if max(R, G) <= np.iinfo(np.uint16).max else np.int64
    rows, cols = (flat // G).astype(gdtype), (flat % G).astype(gdtype)
    for name, group, n_groups, count_key in (
        ("per_target_auroc_macro", cols, G, "n_targets_evaluated"),
        ("per_regulator_auroc_macro", rows, R, "n_regulators_evaluated"),
    ):
        auc = _grouped_auroc(group[asc], ties_asc, labels[asc], n_groups)
        ok = ~np.isnan(auc)
        out[name] = float(auc[ok].mean()) if ok.any() else float("nan")
        out[count_key] = float(ok.sum())

    seeds = np.random.SeedSequence(seed).spawn(3)

    # degree-matched subset
    dm = degree_matched_mask(space, negatives_per_positive=negatives_per_positive, seed=seeds[0])
    dm_sel = dm.ravel()[flat]
    if labels[dm_sel].any():
        c = _curve(s[dm_sel], labels[dm_sel])
        out["degree_matched_auroc"] = _auroc(c)
        out["degree_matched_auprc"] = _average_precision(c)
        out["degree_matched_auprc_ratio"] = out["degree_matched_auprc"] * c.n / c.n_pos
        out["degree_matched_n_positives"] = float(c.n_pos)
    else:
        out.update(dict.fromkeys(
            ["degree_matched_auroc", "degree_matched_auprc", "degree_matched_auprc_ratio"], float("nan")
        ))
        out["degree_matched_n_positives"] = 0.0

    # degree-preserving random networks
    out.update(_random_network_pvalues(
        np.random.default_rng(seeds[1]), rows.astype(np.int64), labels, order, groups_desc, curve, R, n_random
    ))

    out.update(enrichment_summary(
        regulator_enrichment(scores, space, top_n=top_n, seed=int(seeds[2].generate_state(1)[0]))
    ))
    return out


def _random_network_pvalues(
    rng: np.random.Generator,
    rows: np.ndarray,
    labels: np.ndarray,
    order: np.ndarray,
    groups_desc: np.ndarray,
    curve: _Curve,
    R: int,
    n_random: int,
) -> dict[str, float]:
    keys = ["random_network_pvalue_auprc", "random_network_pvalue_auroc", "random_network_auprc_mean"]
    if n_random <= 0:
        return dict.fromkeys(keys, float("nan"))
    n, P = len(labels), curve.n_pos
    group_of = np.empty(n, dtype=np.int64)  # descending tie group of each candidate
    group_of[order] = groups_desc
    group_start = np.r_[0, curve.group_end[:-1]]
    # ascending 1-based ranks of a group are n - end + 1 .. n - start
    avg_rank = n - (group_start + curve.group_end - 1) / 2.0
    obs_ap, obs_auc = _ap_auroc_of_sets(group_of[labels][None, :], curve.group_end, avg_rank, n)
    batch = max(1, 4_000_000 // P)  # bound memory to a few (batch, P) int64 arrays
    ap, auc = [], []
    for b in range(0, n_random, batch):
        sets = _random_positive_sets(rng, rows, labels, R, min(batch, n_random - b))
        a, u = _ap_auroc_of_sets(group_of[sets], curve.group_end, avg_rank, n)
        ap.append(a)
        auc.append(u)
    ap, auc = np.concatenate(ap), np.concatenate(auc)
    return {
        "random_network_pvalue_auprc": float((1 + np.sum(ap >= obs_ap[0])) / (n_random + 1)),
        "random_network_pvalue_auroc": float((1 + np.sum(auc >= obs_auc[0])) / (n_random + 1)),
        "random_network_auprc_mean": float(ap.mean()),
    }


# ---------------------------------------------------------------------------------------
# Per-regulator enrichment (TF-held-out split)
# ---------------------------------------------------------------------------------------
def regulator_enrichment(
    scores: np.ndarray, space: EdgeSpace, *, top_n: int = 100, seed: int = 0
) -> pd.DataFrame:
    """Hypergeometric enrichment of each regulator's held-out targets in its top-N.

    For each regulator with ≥1 held-out candidate target: population = its ``C`` candidate
    targets, successes = its ``K`` held-out targets, draws = its ``n = min(top_n, C)``
    highest-scored candidates (ties broken uniformly at random, seeded), ``n_hits`` = held-out
    targets among them; ``pvalue = P(X ≥ n_hits)``, X ~ Hypergeom(C, K, n);
    ``expected = n K / C``; ``fold_enrichment = n_hits / expected``; ``fdr`` is
    Benjamini-Hochberg over the regulators in the table.

    Returns
    -------
    DataFrame with columns regulator, n_candidates, n_targets, n_top, n_hits, expected,
    fold_enrichment, pvalue, fdr; one row per regulator with held-out targets, in space order.
    """
    _check(scores, space)
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    flat, labels, cand = _candidates(space)
    R, G = space.shape
    s = np.asarray(scores, dtype=np.float64).ravel()[flat]
    rows = flat // G
    n_targets = np.bincount(rows[labels], minlength=R)
    n_cand = np.bincount(rows, minlength=R)
    keep = np.flatnonzero(n_targets > 0)
    cols = [
        "regulator", "n_candidates", "n_targets", "n_top", "n_hits",
        "expected", "fold_enrichment", "pvalue", "fdr",
    ]
    if len(keep) == 0:
        return pd.DataFrame(columns=cols)
    # key: dense rank of the score + U(0, 1) breaks ties at random; non-candidates -1
    _, dense = np.unique(s, return_inverse=True)
    key = np.full(R * G, -1.0)
    key[flat] = dense + np.random.default_rng(seed).random(len(flat))
    key = key.reshape(R, G)[keep]  # (R', G)
    k = min(top_n, G)
    top = np.argpartition(-key, k - 1, axis=1)[:, :k] if k < G else np.broadcast_to(np.arange(G), key.shape)
    n_top = np.minimum(top_n, n_cand[keep])  # rows with < top_n candidates: take all of them
    lab = np.zeros(R * G, dtype=bool)
    lab[flat[labels]] = True
    n_hits = lab.reshape(R, G)[keep[:, None], top].sum(axis=1)  # non-candidates are never labels
    C, K = n_cand[keep], n_targets[keep]
    pvalue = stats.hypergeom.sf(n_hits - 1, C, K, n_top)
    expected = n_top * K / C
    table = pd.DataFrame({
        "regulator": space.regulators[keep],
        "n_candidates": C,
        "n_targets": K,
        "n_top": n_top,
        "n_hits": n_hits,
        "expected": expected,
        "fold_enrichment": n_hits / expected,
        "pvalue": np.clip(pvalue, 0.0, 1.0),
    })
    table["fdr"] = stats.false_discovery_control(table["pvalue"].to_numpy(), method="bh")
    return table[cols]


def enrichment_summary(table: pd.DataFrame, *, alpha: float = 0.05) -> dict[str, float]:
    """Summary of :func:`regulator_enrichment` to merge into :func:`evaluate`'s dict:
    ``enrichment_frac_significant`` (share of regulators with fdr < alpha),
    ``enrichment_median_fold``, ``enrichment_n_regulators``."""
    if len(table) == 0:
        return {"enrichment_frac_significant": float("nan"), "enrichment_median_fold": float("nan"),
                "enrichment_n_regulators": 0.0}
    return {
        "enrichment_frac_significant": float((table["fdr"] < alpha).mean()),
        "enrichment_median_fold": float(table["fold_enrichment"].median()),
        "enrichment_n_regulators": float(len(table)),
    }


# ---------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------
def _curve_points(c: _Curve, n_points: int = 2000) -> np.ndarray:
    """Indices of tie groups to draw: ≤ ~2 n_points, log- and linearly spaced in rank."""
    at = np.unique(np.r_[np.geomspace(1, c.n, n_points), np.linspace(1, c.n, n_points)].astype(np.int64))
    return np.unique(np.searchsorted(c.group_end, at, side="left"))


def curves_png(named_scores: dict[str, np.ndarray], space: EdgeSpace, path: str | os.PathLike) -> None:
    """Write one PNG with PR, ROC and precision@K panels, one line per method.

    Candidates and labels as in :func:`evaluate`; dashed lines mark a random scorer. The
    file is written to a temporary file next to `path` and moved into place atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not named_scores:
        raise ValueError("named_scores is empty; pass {method_name: (R, G) scores}")
    flat, labels, _ = _candidates(space)
    pos_rate = labels.mean()
    fig, (ax_pr, ax_roc, ax_k) = plt.subplots(1, 3, figsize=(16, 5))
    for name, scores in named_scores.items():
        _check(scores, space)
        c = _curve(np.asarray(scores, dtype=np.float64).ravel()[flat], labels)
        ap, auc = _average_precision(c), _auroc(c)
        g = _curve_points(c)
        tp, end = c.tp_end[g], c.group_end[g]
        ax_pr.step(np.r_[0, tp / c.n_pos], np.r_[1, tp / end], where="pre", label=f"{name} (AUPRC {ap:.3g})")
        ax_roc.plot(np.r_[0, (end - tp) / (c.n - c.n_pos)], np.r_[0, tp / c.n_pos], label=f"{name} (AUROC {auc:.3f})")
        k = np.unique(np.geomspace(1, c.n, 400).astype(np.int64))
        ax_k.plot(k, _expected_hits(c, k) / k, label=name)
    ax_pr.axhline(pos_rate, ls="--", c="grey", lw=1, label=f"random ({pos_rate:.2g})")
    ax_roc.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="random")
    ax_k.axhline(pos_rate, ls="--", c="grey", lw=1, label="random")
    ax_pr.set(xlabel="Recall", ylabel="Precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax_k.set(xscale="log", xlabel="K (top-ranked candidate pairs)", ylabel="Precision@K",
             title="Precision@K", ylim=(0, 1.02))
    for ax in (ax_pr, ax_roc, ax_k):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Held-out edges: {int(labels.sum()):,} positives among {len(flat):,} candidate pairs")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
