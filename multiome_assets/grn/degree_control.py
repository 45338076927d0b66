"""Degree-controlled evaluation: does a method beat regulator and target popularity?

``degree_matched_*`` metrics keep, per cell of (regulator out-degree bin, target in-degree bin) in
the training prior, m negatives per positive; a score that depends only on the cell has AUROC 0.5.
"""
from __future__ import annotations

import numpy as np

from multiome_assets.grn.edge_space import Candidates, EdgeSpace
from multiome_assets.grn.streams import random_streams
from multiome_assets.stats import sample_in_blocks


def _log2_bin(degree: np.ndarray) -> np.ndarray:
    """floor(log2(degree + 1)), exactly: bins {0}, {1, 2}, {3..6}, {7..14}, ..."""
    return np.frexp(np.asarray(degree, dtype=np.float64) + 1.0)[1] - 1


def degree_matched_select(
    c: Candidates, space: EdgeSpace, m: int, rng: np.random.Generator
) -> np.ndarray:
    """(n,) bool over the candidates; see :func:`degree_matched_mask`."""
    out_deg, in_deg = space.training_degrees()
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
        keep[by_cell[sample_in_blocks(rng, size, quota, 1)[0]]] = True
    return keep


def degree_matched_mask(space: EdgeSpace, *, negatives_per_positive: int = 10, seed: int = 0) -> np.ndarray:
    """(R, G) bool: candidates kept for the degree-matched evaluation.

    Procedure:

    1. Each candidate (r, t) gets the cell ``(floor(log2(1 + out_r)), floor(log2(1 + in_t)))``
       of its regulator's training out-degree and its target's training in-degree
       (:meth:`EdgeSpace.training_degrees`); bins are {0}, {1, 2}, {3..6}, {7..14}, ...
    2. In each cell with ``p`` held-out positives and ``q`` negatives, keep
       ``p' = min(p, q // m)`` positives and exactly ``m · p'`` negatives
       (``m = negatives_per_positive``), both drawn uniformly without replacement (seeded:
       the pairs that :func:`.metrics.evaluate` with the same `seed` scores).

    Every cell then holds m negatives per positive, so negatives and positives have the
    same cell distribution and the positive rate is exactly ``1 / (1 + m)``; a score that
    depends only on the cell has AUROC exactly 0.5. Positives are dropped only in cells
    short of negatives (dense hub × hub corners).
    """
    if negatives_per_positive < 1:
        raise ValueError(f"negatives_per_positive must be >= 1, got {negatives_per_positive}")
    c = space.candidates()
    keep = degree_matched_select(c, space, int(negatives_per_positive), random_streams(seed)["degree_matched"])
    mask = np.zeros(c.R * c.G, dtype=bool)
    mask[c.flat[keep]] = True
    return mask.reshape(c.R, c.G)
