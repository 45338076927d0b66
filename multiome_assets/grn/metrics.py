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
  regulators' held-out out-degrees kept; ``rewired_network_pvalue_*`` keep the targets'
  held-out in-degrees too.
"""
from __future__ import annotations

import os
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
    "null_networks",
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


def _score_vector(scores: np.ndarray, space: EdgeSpace, flat: np.ndarray) -> np.ndarray:
    """(n,) scores of the candidates; float32 stays float32 (faster sort, half the memory)."""
    scores = np.asarray(scores)
    if scores.shape != space.shape:
        raise ValueError(f"scores have shape {scores.shape}, edge space is {space.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    s = scores.ravel()[flat]
    if np.isnan(s).any():
        n_nan = int(np.isnan(s).sum())
        raise ValueError(f"scores contain {n_nan} NaN on candidates; use -inf for 'no score'")
    return s


@dataclass(frozen=True)
class _Candidates:
    flat: np.ndarray  # (n,) row-major flat indices into (R, G) of the candidate pairs
    labels: np.ndarray  # (n,) bool: held-out edge
    R: int
    G: int

    @classmethod
    def of(cls, space: EdgeSpace) -> "_Candidates":
        flat = np.flatnonzero(space.candidate_mask())
        return cls(flat, space.test.toarray().ravel()[flat], *space.shape)

    @property
    def rows(self) -> np.ndarray:
        return self.flat // self.G


# ---------------------------------------------------------------------------------------
# Seeded sampling without replacement inside contiguous blocks
# ---------------------------------------------------------------------------------------
def _sample_distinct(
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


def _sample_in_blocks(
    rng: np.random.Generator, size: np.ndarray, count: np.ndarray, n_sets: int
) -> np.ndarray:
    """(n_sets, count.sum()) positions in a concatenation of blocks (block b has size[b]
    items): per set, count[b] distinct items of block b, uniformly at random."""
    start = np.r_[0, np.cumsum(size)[:-1]]
    sparse = count <= size - count
    # blocks where few items are drawn: draw them
    b = np.flatnonzero(sparse & (count > 0))
    parts = [start[np.repeat(b, count[b])] + _sample_distinct(rng, size[b], count[b], n_sets)]
    # blocks where most items are drawn: draw the ones left out
    b = np.flatnonzero(~sparse)
    if len(b):
        out = _sample_distinct(rng, size[b], size[b] - count[b], n_sets)
        local_start = np.r_[0, np.cumsum(size[b])[:-1]]
        taken = np.ones((n_sets, int(size[b].sum())), dtype=bool)
        out_start = local_start[np.repeat(np.arange(len(b)), size[b] - count[b])]
        taken[np.arange(n_sets)[:, None], out_start + out] = False
        local_to_global = np.arange(int(size[b].sum())) + np.repeat(start[b] - local_start, size[b])
        parts.append(local_to_global[np.nonzero(taken)[1]].reshape(n_sets, -1))
    return np.concatenate(parts, axis=1)


# ---------------------------------------------------------------------------------------
# Degree-controlled metrics
# ---------------------------------------------------------------------------------------
def training_degrees(space: EdgeSpace) -> tuple[np.ndarray, np.ndarray]:
    """Training-prior degrees: ``out_degree`` (R,) per regulator, ``in_degree`` (G,) per gene.

    These are the popularity signals a degree baseline exploits; held-out edges never
    enter them.
    """
    train = space.train.astype(np.int64)
    in_degree = space.target_in_degree if space.target_in_degree is not None else np.asarray(train.sum(axis=0)).ravel()
    return np.asarray(train.sum(axis=1)).ravel(), in_degree


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


def _log2_bin(degree: np.ndarray) -> np.ndarray:
    """floor(log2(degree + 1)), exactly: bins {0}, {1, 2}, {3..6}, {7..14}, ..."""
    return np.frexp(np.asarray(degree, dtype=np.float64) + 1.0)[1] - 1


def _degree_matched_select(
    c: _Candidates, space: EdgeSpace, m: int, rng: np.random.Generator
) -> np.ndarray:
    """(n,) bool over the candidates; see :func:`degree_matched_mask`."""
    out_deg, in_deg = training_degrees(space)
    bin_r, bin_t = _log2_bin(out_deg), _log2_bin(in_deg)
    n_bins_t = int(bin_t.max()) + 1
    n_cells = (int(bin_r.max()) + 1) * n_bins_t
    cell_of_pair = (bin_r[:, None] * n_bins_t + bin_t[None, :]).astype(np.uint16)  # (R, G), < 65536 cells
    assert n_cells <= np.iinfo(np.uint16).max, f"{n_cells} degree cells"
    cell = cell_of_pair.ravel()[c.flat]
    n_pos = np.bincount(cell[c.labels], minlength=n_cells)
    n_neg = np.bincount(cell[~c.labels], minlength=n_cells)
    keep_pos = np.minimum(n_pos, n_neg // m)
    keep = np.zeros(len(c.flat), dtype=bool)
    for is_pos, size, quota in ((True, n_pos, keep_pos), (False, n_neg, m * keep_pos)):
        idx = np.flatnonzero(c.labels == is_pos)
        by_cell = idx[np.argsort(cell[idx], kind="stable")]  # cell-contiguous blocks
        keep[by_cell[_sample_in_blocks(rng, size, quota, 1)[0]]] = True
    return keep


def degree_matched_mask(space: EdgeSpace, *, negatives_per_positive: int = 10, seed: int = 0) -> np.ndarray:
    """(R, G) bool: candidates kept for the degree-matched evaluation.

    Procedure:

    1. Each candidate (r, t) gets the cell ``(floor(log2(1 + out_r)), floor(log2(1 + in_t)))``
       of its regulator's training out-degree and its target's training in-degree
       (:func:`training_degrees`); bins are {0}, {1, 2}, {3..6}, {7..14}, ...
    2. In each cell with ``p`` held-out positives and ``q`` negatives, keep
       ``p' = min(p, q // m)`` positives and exactly ``m · p'`` negatives
       (``m = negatives_per_positive``), both drawn uniformly without replacement (seeded:
       the pairs that :func:`evaluate` with the same `seed` scores).

    Every cell then holds m negatives per positive, so negatives and positives have the
    same cell distribution and the positive rate is exactly ``1 / (1 + m)``; a score that
    depends only on the cell has AUROC exactly 0.5. Positives are dropped only in cells
    short of negatives (dense hub × hub corners).
    """
    if negatives_per_positive < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}")
    c = _Candidates.of(space)
    keep = _degree_matched_select(c, space, int(negatives_per_positive), _streams(seed)[0])
    mask = np.zeros(c.R * c.G, dtype=bool)
    mask[c.flat[keep]] = True
    return mask.reshape(c.R, c.G)


# ---------------------------------------------------------------------------------------
# Degree-preserving random networks
# ---------------------------------------------------------------------------------------
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
    tp_through = np.searchsorted(flat, flat, side="right").reshape(S, P) - np.arange(S)[:, None] * P
    ap = (tp_through / group_end[g]).sum(axis=1) / P
    auroc = (avg_rank[g].sum(axis=1) - P * (P + 1) / 2.0) / (P * (n - P))
    return ap, auroc


def _rewired_sets(rng: np.random.Generator, c: _Candidates, n_sets: int, rounds: int = 50) -> np.ndarray:
    """(n_sets, P) candidate positions of held-out networks rewired by shuffling the targets of the
    held-out edges among them (the configuration model): every regulator keeps its held-out
    out-degree and every target its held-out in-degree.

    A shuffled pair that is not a candidate (a self-loop, a training positive) or repeats another
    pair of its network swaps targets with a random valid pair of the same network, which keeps
    both degree sequences; `rounds` of swaps leave none in practice (the few left, in dense hub
    corners, take a uniform candidate target of their regulator).
    """
    held = c.flat[c.labels]
    reg, P = held // c.G, len(held)
    position = np.full(c.R * c.G, -1, dtype=np.int64 if len(c.flat) >= 2**31 else np.int32)
    position[c.flat] = np.arange(len(c.flat))  # candidate position of each pair, -1 if none
    t = rng.permuted(np.tile(held % c.G, (n_sets, 1)), axis=1)
    col = np.arange(P)[None, :]
    for _ in range(rounds):
        bad = _invalid(position, reg[None, :] * c.G + t)
        sets = np.flatnonzero(bad.any(axis=1))  # only networks with invalid pairs are reworked
        if len(sets) == 0:
            break
        bad, ts = bad[sets], t[sets]
        n_bad = bad.sum(axis=1, keepdims=True)
        bad_first = np.argsort(~bad, axis=1, kind="stable")
        good_shuffled = np.argsort(np.where(bad, 2.0, rng.random(bad.shape)), axis=1)
        swap = (col < n_bad) & (col < P - n_bad)  # each bad pair with a distinct valid partner
        r, i, j = np.broadcast_to(np.arange(len(sets))[:, None], swap.shape)[swap], bad_first[swap], good_shuffled[swap]
        ts[r, i], ts[r, j] = ts[r, j], ts[r, i]
        t[sets] = ts
    flat = reg[None, :] * c.G + t
    pos = position[flat].astype(np.int64)
    bad = _invalid(position, flat)
    if bad.any():
        size = np.bincount(c.rows, minlength=c.R)
        start = np.r_[0, np.cumsum(size)[:-1]]
        r = reg[np.nonzero(bad)[1]]
        pos[bad] = start[r] + rng.integers(0, size[r])
    return pos


def _invalid(position: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """(S, P) bool: the pair is not a candidate, or repeats an earlier pair of its row."""
    order = np.argsort(flat, axis=1, kind="stable")
    sorted_flat = np.take_along_axis(flat, order, axis=1)
    repeat = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(repeat, order[:, 1:], sorted_flat[:, 1:] == sorted_flat[:, :-1], axis=1)
    return (position[flat] < 0) | repeat


def _null_pvalues(
    prefix: str, sets: np.ndarray, c: _Candidates, group_of: np.ndarray, curve: _Curve
) -> dict[str, float]:
    """p-values of the observed AUPRC/AUROC against held-out networks given as (n_random, P)
    candidate positions; ``group_of`` (n,) is each candidate's descending tie group under the
    fixed scores."""
    keys = [f"{prefix}_pvalue_auprc", f"{prefix}_pvalue_auroc", f"{prefix}_auprc_mean"]
    n_random = len(sets)
    if n_random == 0:
        return dict.fromkeys(keys, float("nan"))
    n, P = len(c.flat), curve.n_pos
    group_start = np.r_[0, curve.group_end[:-1]]
    # ascending 1-based ranks of a group are n - end + 1 .. n - start
    avg_rank = n - (group_start + curve.group_end - 1) / 2.0
    obs_ap, obs_auc = _ap_auroc_of_sets(group_of[c.labels][None, :], curve.group_end, avg_rank, n)
    batch = max(1, 4_000_000 // P)  # bound memory to a few (batch, P) int64 arrays
    ap, auc = [], []
    for b in range(0, n_random, batch):
        a, u = _ap_auroc_of_sets(group_of[sets[b : b + batch]], curve.group_end, avg_rank, n)
        ap.append(a)
        auc.append(u)
    ap, auc = np.concatenate(ap), np.concatenate(auc)
    return dict(zip(keys, (float((1 + np.sum(ap >= obs_ap[0])) / (n_random + 1)),
                           float((1 + np.sum(auc >= obs_auc[0])) / (n_random + 1)), float(ap.mean()))))


def null_networks(space: EdgeSpace, *, n_random: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    """The held-out networks of both random-network nulls, (n_random, P) candidate positions each.

    ``random_network``: each regulator keeps its held-out out-degree, its targets drawn uniformly
    among its candidates; ``rewired_network``: targets keep their held-out in-degree too
    (:func:`_rewired_sets`). They depend on the space and the seed only, not on the scores: draw
    them once and pass them to :func:`evaluate` for every method of a split.
    """
    return _null_networks(_Candidates.of(space), n_random, seed)


def _null_networks(c: _Candidates, n_random: int, seed: int) -> dict[str, np.ndarray]:
    if n_random <= 0:
        return dict.fromkeys(("random_network", "rewired_network"), np.zeros((0, int(c.labels.sum())), dtype=np.int64))
    _, rng_random, _, rng_rewired = _streams(seed)
    size = np.bincount(c.rows, minlength=c.R)  # candidates are row-major: rows are blocks
    count = np.bincount(c.rows[c.labels], minlength=c.R)
    return {"random_network": _sample_in_blocks(rng_random, size, count, n_random),
            "rewired_network": _rewired_sets(rng_rewired, c, n_random)}


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
    networks: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Score a (R, G) matrix against the held-out edges of `space`.

    Parameters
    ----------
    scores
        (R, G) float, higher = more likely an edge; values on self-loops and training
        positives are ignored. NaN on a candidate is rejected (use -inf).
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
        Seeds the degree-matched sampling, the random networks and enrichment tie-breaks
        (independent streams: changing `n_random` leaves the other two unchanged).
    negatives_per_positive
        m of :func:`degree_matched_mask`.
    networks
        :func:`null_networks` of this space, `n_random` and `seed`, drawn once for many methods;
        None draws them here.

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
      positive and ≥1 negative candidate of the AUROC ranking that target's regulators
      (a target-only score gives exactly 0.5); ``per_regulator_auroc_macro``
      (+ ``n_regulators_evaluated``): same within each regulator's row;
    - ``degree_matched_auroc``, ``degree_matched_auprc``, ``degree_matched_auprc_ratio``,
      ``degree_matched_n_positives`` on the pairs of :func:`degree_matched_mask`;
    - ``random_network_pvalue_auprc``/``_auroc``: each regulator keeps its number of
      held-out candidate targets, redrawn uniformly among its candidate targets;
      p = (1 + #{random ≥ observed}) / (n_random + 1); and ``random_network_auprc_mean``.
      Targets are drawn uniformly, so a score that knows only target popularity also beats them;
    - ``rewired_network_pvalue_auprc``/``_auroc``, ``rewired_network_auprc_mean``: the same against
      held-out networks whose targets are shuffled among the held-out edges, so each regulator keeps
      its held-out out-degree and each target its held-out in-degree (the configuration model);
    - ``enrichment_frac_significant``, ``enrichment_median_fold``,
      ``enrichment_n_regulators`` (:func:`enrichment_summary`);
    - ``n_candidates``, ``n_positives``, ``n_test_not_candidate`` (held-out edges dropped
      because they are self-loops or training positives).

    Examples
    --------
    >>> m = evaluate(scores, space, ks=(100,), n_random=100)
    >>> m["auprc_ratio"], m["per_target_auroc_macro"], m["random_network_pvalue_auprc"]
    """
    c = _Candidates.of(space)
    s = _score_vector(scores, space, c.flat)
    n, n_pos = len(c.flat), int(c.labels.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError(
            f"{n_pos} of {n} candidates are held-out positives; need both positives and "
            "negatives (check that space.test is not inside space.train)"
        )
    # the one full sort: descending order and tie groups
    order = np.argsort(s)[::-1]
    groups_desc = _tie_groups_desc(s[order])
    curve = _curve_from_sorted(groups_desc, c.labels[order])
    group_of = np.empty(n, dtype=np.int64)  # descending tie group of each candidate
    group_of[order] = groups_desc

    pos_rate = n_pos / n
    out: dict[str, float] = {
        "n_candidates": float(n),
        "n_positives": float(n_pos),
        "n_test_not_candidate": float(space.test.nnz - n_pos),
        "positive_rate": pos_rate,
        "auprc": _average_precision(curve),
        "auroc": _auroc(curve),
    }
    out["auprc_ratio"] = out["auprc"] / pos_rate
    hits = _expected_hits(curve, np.r_[list(ks), n_pos])
    for k, h in zip(ks, hits[:-1]):
        out[f"precision_at_{k}"] = float(h / min(int(k), n))
        out[f"hit_at_{k}"] = float(h)
        out[f"recall_at_{k}"] = float(h / n_pos)
    out["early_precision_ratio"] = float(hits[-1] / n_pos / pos_rate)

    # per-target / per-regulator AUROC, inputs in ascending score order
    asc = order[::-1]
    flat_asc, labels_asc, ties_asc = c.flat[asc], c.labels[asc], groups_desc[::-1]
    gdtype = np.uint16 if max(c.R, c.G) <= np.iinfo(np.uint16).max else np.int64
    for name, group, n_groups, count_key in (
        ("per_target_auroc_macro", flat_asc % c.G, c.G, "n_targets_evaluated"),
        ("per_regulator_auroc_macro", flat_asc // c.G, c.R, "n_regulators_evaluated"),
    ):
        auc = _grouped_auroc(group.astype(gdtype), ties_asc, labels_asc, n_groups)
        ok = ~np.isnan(auc)
        out[name] = float(auc[ok].mean()) if ok.any() else float("nan")
        out[count_key] = float(ok.sum())
    del asc, flat_asc, labels_asc, ties_asc, order

    rng_dm, _, rng_en, _ = _streams(seed)

    # degree-matched subset
    sel = _degree_matched_select(c, space, int(negatives_per_positive), rng_dm)
    if c.labels[sel].any():
        dm = _curve(s[sel], c.labels[sel])
        out["degree_matched_auroc"] = _auroc(dm)
        out["degree_matched_auprc"] = _average_precision(dm)
        out["degree_matched_auprc_ratio"] = out["degree_matched_auprc"] * dm.n / dm.n_pos
        out["degree_matched_n_positives"] = float(dm.n_pos)
    else:
        for k in ("auroc", "auprc", "auprc_ratio"):
            out[f"degree_matched_{k}"] = float("nan")
        out["degree_matched_n_positives"] = 0.0

    if networks is None:
        networks = _null_networks(c, n_random, seed)
    for prefix in ("random_network", "rewired_network"):
        sets = networks[prefix]
        if sets.shape != (max(n_random, 0), n_pos):
            raise ValueError(f"networks[{prefix!r}] is {sets.shape}, not (n_random={n_random}, positives={n_pos}): "
                             "draw them with null_networks on this space")
        out.update(_null_pvalues(prefix, sets, c, group_of, curve))
    # enrichment: higher key = better; -group_of reuses the sort above
    out.update(enrichment_summary(_regulator_enrichment(c, space, -group_of, top_n, rng_en)))
    return out


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent generators for degree matching, random networks, enrichment tie-breaks and
    rewired networks; :func:`regulator_enrichment` draws from the third, so its table matches
    :func:`evaluate`. (Child i of a SeedSequence does not depend on how many are spawned.)"""
    return [np.random.default_rng(x) for x in np.random.SeedSequence(seed).spawn(4)]


# ---------------------------------------------------------------------------------------
# Per-regulator enrichment (TF-held-out split)
# ---------------------------------------------------------------------------------------
_ENRICHMENT_COLUMNS = [
    "regulator", "n_candidates", "n_targets", "n_top", "n_hits",
    "expected", "fold_enrichment", "pvalue", "fdr",
]


def _regulator_enrichment(
    c: _Candidates, space: EdgeSpace, rank_key: np.ndarray, top_n: int, rng: np.random.Generator
) -> pd.DataFrame:
    """`rank_key` (n,) int: equal iff tied scores, larger = higher score."""
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    R, G = c.R, c.G
    rows = c.rows
    n_targets = np.bincount(rows[c.labels], minlength=R)
    n_cand = np.bincount(rows, minlength=R)
    keep = np.flatnonzero(n_targets > 0)
    if len(keep) == 0:
        return pd.DataFrame(columns=_ENRICHMENT_COLUMNS)
    # dense key >= 0 plus U(0, 1) breaks ties at random; non-candidates -1, never preferred
    key = np.full(R * G, -1.0)
    key[c.flat] = (rank_key - rank_key.min()) + rng.random(len(c.flat))
    key = key.reshape(R, G)[keep]  # (R', G)
    k = min(top_n, G)
    top = np.argpartition(-key, k - 1, axis=1)[:, :k]  # (R', k)
    lab = np.zeros(R * G, dtype=bool)
    lab[c.flat[c.labels]] = True
    n_hits = lab.reshape(R, G)[keep[:, None], top].sum(axis=1)  # non-candidates are never labels
    C, K = n_cand[keep], n_targets[keep]
    n_top = np.minimum(top_n, C)  # a row with < top_n candidates: all of them
    expected = n_top * K / C
    table = pd.DataFrame({
        "regulator": space.regulators[keep],
        "n_candidates": C,
        "n_targets": K,
        "n_top": n_top,
        "n_hits": n_hits,
        "expected": expected,
        "fold_enrichment": n_hits / expected,
        "pvalue": np.clip(stats.hypergeom.sf(n_hits - 1, C, K, n_top), 0.0, 1.0),
    })
    table["fdr"] = stats.false_discovery_control(table["pvalue"].to_numpy(), method="bh")
    return table[_ENRICHMENT_COLUMNS]


def regulator_enrichment(
    scores: np.ndarray, space: EdgeSpace, *, top_n: int = 100, seed: int = 0
) -> pd.DataFrame:
    """Hypergeometric enrichment of each regulator's held-out targets in its top-N.

    For each regulator with ≥1 held-out candidate target: population = its ``C`` candidate
    targets, successes = its ``K`` held-out targets, draws = its ``n = min(top_n, C)``
    highest-scored candidates (ties broken uniformly at random, seeded as in :func:`evaluate`), ``n_hits`` = held-out
    targets among them; ``pvalue = P(X ≥ n_hits)``, X ~ Hypergeom(C, K, n);
    ``expected = n K / C``; ``fold_enrichment = n_hits / expected``; ``fdr`` is
    Benjamini-Hochberg over the regulators in the table. Meant for the TF-held-out split,
    where every held-out regulator has no training edges.

    Returns
    -------
    DataFrame with columns regulator, n_candidates, n_targets, n_top, n_hits, expected,
    fold_enrichment, pvalue, fdr; one row per regulator with held-out targets, in space order.
    """
    c = _Candidates.of(space)
    s = _score_vector(scores, space, c.flat)
    _, dense = np.unique(s, return_inverse=True)
    return _regulator_enrichment(c, space, dense, top_n, _streams(seed)[2])


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

    Candidates and labels as in :func:`evaluate`; dashed lines mark chance. The
    file is written to a temporary file next to `path` and moved into place atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not named_scores:
        raise ValueError("named_scores is empty; pass {method_name: (R, G) scores}")
    cands = _Candidates.of(space)
    flat, labels = cands.flat, cands.labels
    pos_rate = labels.mean()
    fig, (ax_pr, ax_roc, ax_k) = plt.subplots(1, 3, figsize=(16, 5))
    for name, scores in named_scores.items():
        c = _curve(_score_vector(scores, space, flat), labels)
        ap, auc = _average_precision(c), _auroc(c)
        g = _curve_points(c)
        tp, end = c.tp_end[g], c.group_end[g]
        ax_pr.step(np.r_[0, tp / c.n_pos], np.r_[1, tp / end], where="pre", label=f"{name} (AUPRC {ap:.3g})")
        fpr, tpr = np.r_[0, (end - tp) / (c.n - c.n_pos)], np.r_[0, tp / c.n_pos]
        ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
        k = np.unique(np.geomspace(1, c.n, 400).astype(np.int64))
        ax_k.plot(k, _expected_hits(c, k) / k, label=name)
    ax_pr.axhline(pos_rate, ls="--", c="grey", lw=1, label=f"chance ({pos_rate:.2g})")
    ax_roc.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    ax_k.axhline(pos_rate, ls="--", c="grey", lw=1, label="chance")
    ax_pr.set(xlabel="Recall", ylabel="Precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC",
               xlim=(0, 1), ylim=(0, 1.02))
    ax_k.set(xscale="log", xlabel="K (top-ranked candidate pairs)", ylabel="Precision@K",
             title="Precision@K", ylim=(0, 1.02))
    for ax in (ax_pr, ax_roc, ax_k):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"Held-out edges: {int(labels.sum()):,} positives among {len(flat):,} candidate pairs")
    fig.tight_layout()
    from multiome_assets.warehouse import atomic_path

    try:
        with atomic_path(Path(path)) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
    finally:
        plt.close(fig)
