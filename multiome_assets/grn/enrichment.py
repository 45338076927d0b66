"""Per-regulator enrichment: are a regulator's held-out targets over-represented in its top N?"""
from __future__ import annotations

import numpy as np
import pandas as pd

from multiome_assets.grn.edge_space import Candidates, EdgeSpace, score_vector
from multiome_assets.grn.streams import random_streams
from multiome_assets.stats import bh_fdr, hypergeometric_sf

_ENRICHMENT_COLUMNS = [
    "regulator", "n_candidates", "n_targets", "n_top", "n_hits",
    "expected", "fold_enrichment", "pvalue", "fdr",
]


def regulator_enrichment_table(
    c: Candidates, space: EdgeSpace, rank_key: np.ndarray, top_n: int, rng: np.random.Generator
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
        "pvalue": hypergeometric_sf(n_hits, C, K, n_top),
    })
    table["fdr"] = bh_fdr(table["pvalue"].to_numpy())
    return table[_ENRICHMENT_COLUMNS]


def regulator_enrichment(
    scores: np.ndarray, space: EdgeSpace, *, top_n: int = 100, seed: int = 0
) -> pd.DataFrame:
    """Hypergeometric enrichment of each regulator's held-out targets in its top-N.

    For each regulator with ≥1 held-out candidate target: population = its ``C`` candidate
    targets, successes = its ``K`` held-out targets, draws = its ``n = min(top_n, C)``
    highest-scored candidates (ties broken uniformly at random, seeded as in :func:`.metrics.evaluate`), ``n_hits`` = held-out
    targets among them; ``pvalue = P(X ≥ n_hits)``, X ~ Hypergeom(C, K, n);
    ``expected = n K / C``; ``fold_enrichment = n_hits / expected``; ``fdr`` is
    Benjamini-Hochberg over the regulators in the table. Meant for the TF-held-out split,
    where every held-out regulator has no training edges.

    Returns
    -------
    DataFrame with columns regulator, n_candidates, n_targets, n_top, n_hits, expected,
    fold_enrichment, pvalue, fdr; one row per regulator with held-out targets, in space order.
    """
    c = space.candidates()
    s = score_vector(scores, space, c.flat)
    _, dense = np.unique(s, return_inverse=True)
    return regulator_enrichment_table(c, space, dense, top_n, random_streams(seed)["enrichment"])


def enrichment_summary(table: pd.DataFrame, *, alpha: float = 0.05) -> dict[str, float]:
    """Summary of :func:`regulator_enrichment` to merge into :func:`.metrics.evaluate`'s dict:
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
