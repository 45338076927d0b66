"""Translation metrics, over all target features of the held-out cells (zeros included: a
translator is never handed the answer's zero pattern).

RNA→ATAC: pooled (cell, CRE) AUROC/AUPRC, which mostly reward knowing which CREs are often open;
per-CRE AUROC across cells, macro-averaged, which a popularity score cannot win (exactly 0.5);
per-cell precision/recall/F1 of calls at a threshold calibrated on validation cells; Pearson of
pseudobulk accessibility per cell type. ATAC→RNA: gene-wise Pearson and Spearman across cells,
cell-wise Pearson across genes. Both: clustering of the profiles against the cell types, and
`prediction_spread`, how much the predictions vary across cells against how much the measured
profiles do: a translator that gives every cell the same profile (a collapse, as BMMC's translators
on another 10x sample) scores 0, whatever its other metrics say.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats
from sklearn import metrics as skm
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from multiome_assets.cells import cell_types, labelled
from multiome_assets.stats import auroc, average_precision, rank_curve


def per_feature_auroc(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(F,) AUROC of each column's scores across cells (ties 1/2); NaN where the truth is constant."""
    ranks = scipy_stats.rankdata(scores, axis=0)
    pos = truth.sum(0).astype(np.float64)
    neg = truth.shape[0] - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * truth).sum(0) - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return auc


def calibrate_threshold(prob: np.ndarray, truth: np.ndarray) -> float:
    """The probability cut-off with the best pooled F1 on (validation) cells."""
    c = rank_curve(prob.ravel(), truth.ravel().astype(bool))
    precision, recall = c.tp_end / c.group_end, c.tp_end / max(c.n_pos, 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    best = int(np.argmax(f1))
    return float(np.sort(prob.ravel())[::-1][c.group_end[best] - 1])


def atac_metrics(prob: np.ndarray, truth: np.ndarray, threshold: float, labels: np.ndarray | None) -> dict[str, float]:
    truth = truth.astype(bool)
    calls = prob >= threshold
    tp = (calls & truth).sum(1)
    precision = tp / np.maximum(calls.sum(1), 1)
    recall = tp / np.maximum(truth.sum(1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
    pooled = rank_curve(prob.ravel(), truth.ravel())
    return {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
            "auroc": auroc(pooled), "auprc": average_precision(pooled),
            "per_cre_auroc_macro": float(np.nanmean(per_feature_auroc(prob, truth))),
            "pseudobulk_pearson": pseudobulk_pearson(prob, truth.astype(np.float32), labels),
            "prediction_spread": prediction_spread(prob, truth)}


def rna_metrics(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"gene_pearson": float(np.nanmean(_columnwise_pearson(predicted, truth))),
            "gene_spearman": float(np.nanmean(_columnwise_pearson(scipy_stats.rankdata(predicted, axis=0),
                                                                  scipy_stats.rankdata(truth, axis=0)))),
            "cell_pearson": float(np.nanmean(_columnwise_pearson(predicted.T, truth.T))),
            "prediction_spread": prediction_spread(predicted, truth)}


def prediction_spread(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Median over features that vary in the measured cells of var(predicted) / var(measured) across
    cells: 0 when every cell gets the same prediction, 1 for the measured profile itself. (For
    accessibility, probabilities against 0/1 calls: a calibrated probability varies less than its
    calls, so below 1 is expected; 0 is the alarm.)"""
    measured = truth.astype(np.float64).var(axis=0)
    varies = measured > 0
    if not varies.any():
        return float("nan")
    return float(np.median(predicted.astype(np.float64).var(axis=0)[varies] / measured[varies]))


def _columnwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(F,) Pearson of each column pair; NaN where either is constant (a global mean, a gene never seen)."""
    a, b = a - a.mean(0), b - b.mean(0)
    denominator = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a * b).sum(0) / denominator
    return np.where(denominator > 1e-12, r, np.nan)


def pseudobulk_pearson(predicted: np.ndarray, truth: np.ndarray, labels: np.ndarray | None) -> float:
    """Mean over cell types (all cells as one without labels; unlabelled cells in no type) of the
    Pearson, across features, of the type's mean predicted and mean measured profile."""
    if labels is None:
        labels, types = np.zeros(len(truth), dtype=object), [0]
    else:
        types = cell_types(labels)[0]
    r = [np.corrcoef(predicted[labels == t].mean(0), truth[labels == t].mean(0))[0, 1] for t in types]
    return float(np.nanmean(r))


def clustering_scores(profile: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float]:
    """K-means (k = number of cell types) on a PCA of the labelled cells' profiles, against their types."""
    keep = labelled(labels)
    profile, labels = profile[keep], labels[keep].astype(str)
    k = len(np.unique(labels))
    if k < 2 or len(labels) <= k:
        return {}
    z = PCA(max(1, min(20, profile.shape[0] - 1, profile.shape[1])), random_state=seed).fit_transform(profile)
    clusters = KMeans(k, n_init=10, random_state=seed).fit_predict(z)
    return {"ami": skm.adjusted_mutual_info_score(labels, clusters),
            "nmi": skm.normalized_mutual_info_score(labels, clusters),
            "ari": skm.adjusted_rand_score(labels, clusters),
            "homogeneity": skm.homogeneity_score(labels, clusters)}
