"""Random-network nulls: p-values of a method's AUPRC/AUROC against held-out networks drawn at random.

``random_network``: each regulator keeps its held-out out-degree, its targets drawn uniformly among
its candidates (the paper's null; a score that knows target popularity also beats it).
``rewired_network``: the targets of the held-out edges are shuffled among them, so each target also
keeps its held-out in-degree (the configuration model), which no popularity score can beat.
p = (1 + #{random >= observed}) / (n_random + 1).
"""
from __future__ import annotations

import numpy as np

from multiome_assets.grn.edge_space import Candidates, EdgeSpace
from multiome_assets.grn.streams import random_streams
from multiome_assets.stats import RankCurve, sample_in_blocks


def _ap_auroc_of_sets(
    pos_groups: np.ndarray, group_end: np.ndarray, avg_rank: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """AUPRC and AUROC of (S, P) positive sets given as descending tie-group ids.

    AP = (1/P) Σ_positives TP(≤ its group) / group_end; AUROC sums the positives' average
    ascending ranks (Mann-Whitney). Same values as :func:`multiome_assets.stats.average_precision` / :func:`~multiome_assets.stats.auroc`.
    """
    S, P = pos_groups.shape
    g = np.sort(pos_groups, axis=1)
    n_groups = len(group_end)
    flat = (g + np.arange(S)[:, None] * n_groups).ravel()
    tp_through = np.searchsorted(flat, flat, side="right").reshape(S, P) - np.arange(S)[:, None] * P
    ap = (tp_through / group_end[g]).sum(axis=1) / P
    auroc = (avg_rank[g].sum(axis=1) - P * (P + 1) / 2.0) / (P * (n - P))
    return ap, auroc


def _rewired_sets(rng: np.random.Generator, c: Candidates, n_sets: int, rounds: int = 50) -> np.ndarray:
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


def null_pvalues(
    prefix: str, sets: np.ndarray, c: Candidates, group_of: np.ndarray, curve: RankCurve
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
    them once and pass them to :func:`.metrics.evaluate` for every method of a split.
    """
    return draw_null_networks(space.candidates(), n_random, seed)


def draw_null_networks(c: Candidates, n_random: int, seed: int) -> dict[str, np.ndarray]:
    if n_random <= 0:
        return dict.fromkeys(("random_network", "rewired_network"), np.zeros((0, int(c.labels.sum())), dtype=np.int64))
    streams = random_streams(seed)
    rng_random, rng_rewired = streams["random_network"], streams["rewired_network"]
    size = np.bincount(c.rows, minlength=c.R)  # candidates are row-major: rows are blocks
    count = np.bincount(c.rows[c.labels], minlength=c.R)
    return {"random_network": sample_in_blocks(rng_random, size, count, n_random),
            "rewired_network": _rewired_sets(rng_rewired, c, n_random)}
