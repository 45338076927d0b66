"""What the asset checks decide, as plain functions: is a dataset's input what the references
expect, and does each transformer beat the simple methods beside it. `defs/` turns each verdict into
a Dagster asset check, shown on the asset's page in the UI.

Thresholds, from the bundled data and what a wrong input gives:
- cCRE overlap: 93–95% of the bundled datasets' peaks overlap a cCRE of the vocabulary; peaks at
  random positions overlap ~25% (the 1 M cCREs cover ~10% of hg38). Below 50%: another genome
  (an error); below 80%: a warning.
- genes matched to the annotation: 94–99% on the bundled data; another species' symbols match a
  few. Below 30%: an error; below 80%: a warning.
- prior edges within the dataset's genes and TF list: a 600-gene panel holds 0.7% of DoRothEA's;
  below 5% is a warning (the evaluation rests on few edges), never an error.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Verdict:
    passed: bool
    error: bool  # severity when it fails: an error (the input is wrong), else a warning
    value: float
    description: str


def fraction_at_least(value: float, warn_below: float, error_below: float | None, what: str) -> Verdict:
    passed = value >= warn_below
    error = error_below is not None and value < error_below
    bar = f"warning below {warn_below:.0%}" + (f", error below {error_below:.0%}" if error_below is not None else "")
    return Verdict(passed, error, value, f"{value:.1%} of {what} ({bar})")


def ccre_overlap(peaks_overlapping: int, peaks: int) -> Verdict:
    if peaks == 0:
        return Verdict(True, False, float("nan"), "no peaks (a dataset with only RNA): nothing to check")
    return fraction_at_least(peaks_overlapping / max(peaks, 1), 0.8, 0.5,
                             "peaks overlap a cCRE of the vocabulary (hg38): fewer means another genome build")


def genes_matched(matched: int, genes: int) -> Verdict:
    if genes == 0:
        return Verdict(True, False, float("nan"), "no genes (a dataset with only ATAC): nothing to check")
    return fraction_at_least(matched / max(genes, 1), 0.8, 0.3,
                             "genes are in the annotation: fewer means another species or naming")


def prior_coverage(edges_in_dataset: int, prior_edges: int) -> Verdict:
    return fraction_at_least(edges_in_dataset / max(prior_edges, 1), 0.05, None,
                             "the prior's edges lie within the dataset's genes and TF list")


def grn_transformer_vs_baselines(metrics: pd.DataFrame, split: str = "tf_heldout", metric: str = "auroc",
                                 transformer: str = "epiawarenet_bce") -> Verdict:
    """The primary GRN comparison: `metric` on `split` (regulators never seen in training: what a
    new TF's targets would get) of the transformer head against the best simple method (expression
    baselines and prior-degree baselines). A warning when it does not beat it."""
    rows = metrics[metrics.split == split].set_index("method")
    simple = rows[rows.kind.isin(["baseline", "degree_baseline"])][metric]
    if transformer not in rows.index or simple.dropna().empty:
        return Verdict(True, False, float("nan"), f"no {transformer} or baseline rows on split {split!r}")
    ours, best = float(rows.loc[transformer, metric]), simple.idxmax()
    return Verdict(ours > simple[best], False, ours - float(simple[best]),
                   f"{metric} on the {split} split: {transformer} {ours:.3f}, the best simple method {best} "
                   f"{simple[best]:.3f}")


TRANSLATION_PRIMARY = {"rna2atac": "per_cre_auroc_macro", "atac2rna": "gene_pearson"}


def translator_vs_baselines(metrics: pd.DataFrame, scenario: str = "random") -> Verdict:
    """The primary translation comparisons on `scenario`'s test cells: RNA→ATAC `per_cre_auroc_macro`
    (which feature popularity cannot win) and ATAC→RNA `gene_pearson`, the transformer against the
    best of the global mean, kNN and ridge. A warning unless it beats them in both."""
    parts, margins = [], []
    for direction, metric in TRANSLATION_PRIMARY.items():
        rows = metrics[(metrics.direction == direction) & (metrics.scenario == scenario) & (metrics.metric == metric)]
        values = rows.set_index("method").value
        simple = values.reindex(["global_mean", "knn", "ridge"]).dropna()
        if "cisformer" not in values.index or simple.empty:
            continue
        margins.append(float(values["cisformer"] - simple.max()))
        parts.append(f"{direction} {metric}: cisformer {values['cisformer']:.3f}, best simple {simple.idxmax()} "
                     f"{simple.max():.3f}")
    if not margins:
        return Verdict(True, False, float("nan"), f"no translation rows on scenario {scenario!r}")
    return Verdict(min(margins) > 0, False, min(margins), "; ".join(parts))
