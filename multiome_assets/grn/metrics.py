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

Ties are handled exactly (:mod:`multiome_assets.stats`). :func:`evaluate` returns the row of
``grn_metrics``: ranking metrics (here), degree-controlled metrics (:mod:`.degree_control` and the
per-target / per-regulator AUROC here), random-network p-values (:mod:`.nulls`) and the
per-regulator enrichment summary (:mod:`.enrichment`).

Degree-controlled metrics answer "does the method beat target/regulator popularity?":

- ``per_target_auroc_macro`` ranks the regulators of one target gene, so a score that
  depends only on the target scores exactly 0.5;
- ``per_regulator_auroc_macro`` ranks the candidate targets of one regulator;
- ``degree_matched_*`` restrict to negatives drawn to match the positives' training-degree
  bins (:func:`.degree_control.degree_matched_mask`);
- ``random_network_pvalue_*`` compare to held-out networks re-wired at random with the
  regulators' held-out out-degrees kept; ``rewired_network_pvalue_*`` keep the targets'
  held-out in-degrees too.
"""
from __future__ import annotations

import os

import numpy as np

from multiome_assets.grn.degree_control import degree_matched_select
from multiome_assets.grn.edge_space import EdgeSpace, score_vector
from multiome_assets.grn.enrichment import (
    enrichment_summary,
    regulator_enrichment_table,
)
from multiome_assets.grn.nulls import draw_null_networks, null_pvalues
from multiome_assets.grn.streams import random_streams
from multiome_assets.stats import (
    auroc,
    average_precision,
    curve_from_sorted,
    expected_hits,
    grouped_auroc,
    plot_ranking_curves,
    rank_curve,
    tie_groups_desc,
)


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
        see :func:`.enrichment.regulator_enrichment`).
    seed
        Seeds the degree-matched sampling, the random networks and enrichment tie-breaks
        (independent streams: changing `n_random` leaves the other two unchanged).
    negatives_per_positive
        m of :func:`.degree_control.degree_matched_mask`.
    networks
        :func:`.nulls.null_networks` of this space, `n_random` and `seed`, drawn once for many methods;
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
      ``degree_matched_n_positives`` on the pairs of :func:`.degree_control.degree_matched_mask`;
    - ``random_network_pvalue_auprc``/``_auroc``: each regulator keeps its number of
      held-out candidate targets, redrawn uniformly among its candidate targets;
      p = (1 + #{random ≥ observed}) / (n_random + 1); and ``random_network_auprc_mean``.
      Targets are drawn uniformly, so a score that knows only target popularity also beats them;
    - ``rewired_network_pvalue_auprc``/``_auroc``, ``rewired_network_auprc_mean``: the same against
      held-out networks whose targets are shuffled among the held-out edges, so each regulator keeps
      its held-out out-degree and each target its held-out in-degree (the configuration model);
    - ``enrichment_frac_significant``, ``enrichment_median_fold``,
      ``enrichment_n_regulators`` (:func:`.enrichment.enrichment_summary`);
    - ``n_candidates``, ``n_positives``, ``n_test_not_candidate`` (held-out edges dropped
      because they are self-loops or training positives).

    Examples
    --------
    >>> m = evaluate(scores, space, ks=(100,), n_random=100)
    >>> m["auprc_ratio"], m["per_target_auroc_macro"], m["random_network_pvalue_auprc"]
    """
    c = space.candidates()
    s = score_vector(scores, space, c.flat)
    n, n_pos = len(c.flat), int(c.labels.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError(
            f"{n_pos} of {n} candidates are held-out positives; need both positives and "
            "negatives (check that space.test is not inside space.train)"
        )
    ranking = _Ranking.of(s, c.labels)  # the one full sort
    streams = random_streams(seed)
    if networks is None:
        networks = draw_null_networks(c, n_random, seed)
    out = {"n_candidates": float(n), "n_positives": float(n_pos), "n_test_not_candidate": float(space.test.nnz - n_pos),
           **ranking_metrics(ranking.curve, ks)}
    out.update(per_group_auroc(c, ranking))
    out.update(degree_matched_metrics(s, c, space, negatives_per_positive, streams["degree_matched"]))
    for prefix in ("random_network", "rewired_network"):
        sets = networks[prefix]
        if sets.shape != (max(n_random, 0), n_pos):
            raise ValueError(f"networks[{prefix!r}] is {sets.shape}, not (n_random={n_random}, positives={n_pos}): "
                             "draw them with null_networks on this space")
        out.update(null_pvalues(prefix, sets, c, ranking.group_of, ranking.curve))
    # -group_of: higher = better, reusing the sort above
    out.update(enrichment_summary(regulator_enrichment_table(c, space, -ranking.group_of, top_n, streams["enrichment"])))
    return out


class _Ranking:
    """Candidates in descending score order: order, tie groups, the curve, each one's tie group."""

    def __init__(self, order, groups_desc, curve, group_of):
        self.order, self.groups_desc, self.curve, self.group_of = order, groups_desc, curve, group_of

    @classmethod
    def of(cls, s: np.ndarray, labels: np.ndarray) -> "_Ranking":
        order = np.argsort(s)[::-1]
        groups_desc = tie_groups_desc(s[order])
        group_of = np.empty(len(s), dtype=np.int64)
        group_of[order] = groups_desc
        return cls(order, groups_desc, curve_from_sorted(groups_desc, labels[order]), group_of)


def ranking_metrics(curve, ks: tuple[int, ...]) -> dict[str, float]:
    """AUPRC, AUROC, their ratio to chance, precision / hits / recall at each k, early precision."""
    n, n_pos = curve.n, curve.n_pos
    pos_rate = n_pos / n
    out = {"positive_rate": pos_rate, "auprc": average_precision(curve), "auroc": auroc(curve)}
    out["auprc_ratio"] = out["auprc"] / pos_rate
    hits = expected_hits(curve, np.r_[list(ks), n_pos])
    for k, h in zip(ks, hits[:-1]):
        out[f"precision_at_{k}"] = float(h / min(int(k), n))
        out[f"hit_at_{k}"] = float(h)
        out[f"recall_at_{k}"] = float(h / n_pos)
    out["early_precision_ratio"] = float(hits[-1] / n_pos / pos_rate)
    return out


def per_group_auroc(c, ranking: _Ranking) -> dict[str, float]:
    """Mean AUROC ranking the regulators of each target (popularity of targets cannot win it) and
    the targets of each regulator, over the groups with a positive and a negative."""
    asc = ranking.order[::-1]
    flat_asc, labels_asc, ties_asc = c.flat[asc], c.labels[asc], ranking.groups_desc[::-1]
    gdtype = np.uint16 if max(c.R, c.G) <= np.iinfo(np.uint16).max else np.int64
    out = {}
    for name, group, n_groups, count_key in (
        ("per_target_auroc_macro", flat_asc % c.G, c.G, "n_targets_evaluated"),
        ("per_regulator_auroc_macro", flat_asc // c.G, c.R, "n_regulators_evaluated"),
    ):
        auc = grouped_auroc(group.astype(gdtype), ties_asc, labels_asc, n_groups)
        ok = ~np.isnan(auc)
        out[name] = float(auc[ok].mean()) if ok.any() else float("nan")
        out[count_key] = float(ok.sum())
    return out


def degree_matched_metrics(s: np.ndarray, c, space: EdgeSpace, negatives_per_positive: int,
                           rng: np.random.Generator) -> dict[str, float]:
    """AUROC, AUPRC and its ratio on the degree-matched subset of the candidates."""
    sel = degree_matched_select(c, space, int(negatives_per_positive), rng)
    if not c.labels[sel].any():
        return {"degree_matched_auroc": float("nan"), "degree_matched_auprc": float("nan"),
                "degree_matched_auprc_ratio": float("nan"), "degree_matched_n_positives": 0.0}
    dm = rank_curve(s[sel], c.labels[sel])
    ap = average_precision(dm)
    return {"degree_matched_auroc": auroc(dm), "degree_matched_auprc": ap,
            "degree_matched_auprc_ratio": ap * dm.n / dm.n_pos, "degree_matched_n_positives": float(dm.n_pos)}


def curves_png(named_scores: dict[str, np.ndarray], space: EdgeSpace, path: str | os.PathLike) -> None:
    """PR, ROC and precision@K panels of each method's (R, G) scores on the candidates of `space`."""
    c = space.candidates()
    plot_ranking_curves({name: score_vector(s, space, c.flat) for name, s in named_scores.items()}, c.labels, path,
                        title=f"Held-out edges: {int(c.labels.sum()):,} positives among {len(c.flat):,} candidate pairs")
