"""GRN metrics: hand-computed cases on a 2 × 4 space, exactness against independent
oracles (sklearn, loops, scipy, math.comb), and the degree-control guarantees."""
from __future__ import annotations

import math

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from multiome_assets.grn.degree_control import degree_matched_mask
from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.enrichment import enrichment_summary, regulator_enrichment
from multiome_assets.grn.metrics import curves_png, evaluate
from multiome_assets.grn.nulls import _rewired_sets, null_networks
from multiome_assets.stats import sample_in_blocks


# --- tiny space --------------------------------------------------------------------------
# regulators A, B; genes A, B, C, D. Self-loops (A,A), (B,B); training edge (A,C);
# held-out edges (A,D), (B,A) and (A,C) (the last is a training positive: not a label).
# Candidates: (A,B) (A,D) (B,A) (B,C) (B,D); positives (A,D), (B,A).
def tiny_space() -> EdgeSpace:
    train = pd.DataFrame({"tf": ["A"], "target": ["C"]})
    test = pd.DataFrame({"tf": ["A", "B", "A"], "target": ["D", "A", "C"]})
    return EdgeSpace.from_edges(["A", "B"], ["A", "B", "C", "D"], train, test)


def tiny_scores() -> np.ndarray:
    #        A    B    C    D
    return np.array([
        [10.0, 0.9, 5.0, 0.8],  # A: (A,A) self, (A,C) training: ignored
        [0.3, 7.0, 0.5, 0.4],  # B: (B,B) self: ignored
    ])


def test_tiny_space_by_hand():
    m = evaluate(tiny_scores(), tiny_space(), ks=(1, 2, 3, 10), n_random=0)
    # descending: (A,B) .9 neg, (A,D) .8 POS, (B,C) .5 neg, (B,D) .4 neg, (B,A) .3 POS
    assert m["n_candidates"] == 5 and m["n_positives"] == 2
    assert m["n_test_not_candidate"] == 1  # (A,C)
    assert m["positive_rate"] == pytest.approx(2 / 5)
    # AP = mean precision at each positive = (1/2 + 2/5) / 2
    assert m["auprc"] == pytest.approx(0.45)
    assert m["auprc_ratio"] == pytest.approx(0.45 / 0.4)
    # pairs won: (A,D) beats (B,C), (B,D); (B,A) beats none -> 2 of 2*3
    assert m["auroc"] == pytest.approx(1 / 3)
    assert m["precision_at_1"] == 0.0 and m["hit_at_1"] == 0.0
    assert m["precision_at_2"] == pytest.approx(0.5) and m["hit_at_2"] == 1.0
    assert m["precision_at_3"] == pytest.approx(1 / 3) and m["recall_at_3"] == pytest.approx(0.5)
    # k=10 > 5 candidates: clipped to all 5
    assert m["hit_at_10"] == 2.0 and m["precision_at_10"] == pytest.approx(0.4)
    # EPR: precision in the top 2 (= n_positives) over the positive rate
    assert m["early_precision_ratio"] == pytest.approx(0.5 / 0.4)
    # per target: only D has a positive and a negative: (A,D) .8 > (B,D) .4
    assert m["per_target_auroc_macro"] == 1.0 and m["n_targets_evaluated"] == 1
    # per regulator: row A: (A,D) .8 < (A,B) .9; row B: (B,A) .3 below both negatives
    assert m["per_regulator_auroc_macro"] == 0.0 and m["n_regulators_evaluated"] == 2


def test_ties_by_hand():
    s = tiny_scores()
    s[0, 3] = s[1, 2] = s[1, 3] = 0.5  # (A,D) POS ties (B,C), (B,D); (B,A) .3 last
    m = evaluate(s, tiny_space(), ks=(1, 2), n_random=0)
    # tie group {AD, BC, BD} spans ranks 2-4 and holds 1 positive in 3
    assert m["hit_at_2"] == pytest.approx(1 / 3)
    assert m["precision_at_2"] == pytest.approx(1 / 6)
    # thresholds: after rank 4 precision 1/4 (recall 1/2), after rank 5 precision 2/5
    assert m["auprc"] == pytest.approx((1 / 4 + 2 / 5) / 2)
    # (A,D) ties both negatives it could beat: 1/2 + 1/2 of 6 pairs
    assert m["auroc"] == pytest.approx(1 / 6)

    flat = evaluate(np.ones((2, 4)), tiny_space(), ks=(1,), n_random=0)
    assert flat["auprc"] == pytest.approx(0.4) and flat["auroc"] == pytest.approx(0.5)
    assert flat["precision_at_1"] == pytest.approx(0.4)
    assert flat["per_target_auroc_macro"] == 0.5 and flat["per_regulator_auroc_macro"] == 0.5


def test_training_degrees_by_hand():
    out_deg, in_deg = tiny_space().training_degrees()
    np.testing.assert_array_equal(out_deg, [1, 0])
    np.testing.assert_array_equal(in_deg, [0, 0, 1, 0])


def test_non_candidate_scores_change_nothing():
    space = random_space(np.random.default_rng(3), R=12, G=60)
    s = np.random.default_rng(4).random(space.shape)
    base = evaluate(s, space, ks=(5, 20), n_random=30, top_n=5)
    s2 = s.copy()
    off = ~space.candidate_mask()
    s2[off] = np.where(space.test.toarray()[off], 1e9, -1e9)  # try to leak through non-candidates
    assert evaluate(s2, space, ks=(5, 20), n_random=30, top_n=5) == base


def test_bad_inputs_are_rejected():
    space = tiny_space()
    with pytest.raises(ValueError, match="shape"):
        evaluate(np.zeros((2, 3)), space, n_random=0)
    s = tiny_scores()
    s[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(s, space, n_random=0)
    s[1, 2], s[0, 0] = 0.5, np.nan  # NaN on a self-loop is fine
    evaluate(s, space, n_random=0)
    only_training = pd.DataFrame({"tf": ["A"], "target": ["C"]})
    no_test = EdgeSpace.from_edges(["A", "B"], ["A", "B", "C", "D"], only_training, only_training)
    with pytest.raises(ValueError, match="held-out positives"):
        evaluate(tiny_scores(), no_test, n_random=0)
    with pytest.raises(ValueError, match="regulators are not among the genes"):
        EdgeSpace(np.array(["Z"]), np.array(["A", "B"]), no_test.train[:1, :2], no_test.test[:1, :2])


# --- random spaces -----------------------------------------------------------------------
def random_space(rng, R=20, G=150, p_train=0.05, p_test=0.05, weights=None) -> EdgeSpace:
    genes = np.array([f"g{i}" for i in range(G)], dtype=object)
    w = np.ones((R, G)) if weights is None else weights
    train = sp.csr_matrix(rng.random((R, G)) < p_train)
    test = sp.csr_matrix(rng.random((R, G)) < p_test * w)
    return EdgeSpace(genes[:R], genes, train, test)


def test_global_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    space = random_space(rng)
    s = np.round(rng.random(space.shape), 1)  # heavy ties
    cand = space.candidate_mask()
    y = space.test.toarray()[cand]
    m = evaluate(s, space, n_random=0)
    assert m["auprc"] == pytest.approx(average_precision_score(y, s[cand]), abs=1e-12)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s[cand]), abs=1e-12)


def test_per_group_auroc_matches_loop():
    rng = np.random.default_rng(1)
    space = random_space(rng, R=15, G=80, p_test=0.15)
    s = np.round(rng.random(space.shape), 1)
    cand, y = space.candidate_mask(), space.test.toarray()
    by_target = [roc_auc_score(y[cand[:, j], j], s[cand[:, j], j]) for j in range(space.shape[1])
                 if 0 < y[cand[:, j], j].sum() < cand[:, j].sum()]
    by_reg = [roc_auc_score(y[i, cand[i]], s[i, cand[i]]) for i in range(space.shape[0])
              if 0 < y[i, cand[i]].sum() < cand[i].sum()]
    m = evaluate(s, space, n_random=0)
    assert m["n_targets_evaluated"] == len(by_target)
    assert m["per_target_auroc_macro"] == pytest.approx(np.mean(by_target), abs=1e-12)
    assert m["n_regulators_evaluated"] == len(by_reg)
    assert m["per_regulator_auroc_macro"] == pytest.approx(np.mean(by_reg), abs=1e-12)


def test_target_only_score_is_chance_per_target_and_perfect_is_one():
    rng = np.random.default_rng(2)
    space = random_space(rng, R=25, G=120, p_test=0.1)
    popularity = np.asarray(space.test.sum(axis=0)).ravel() + rng.random(120)  # leaks target popularity
    m = evaluate(np.broadcast_to(popularity, space.shape), space, n_random=0)
    assert m["auroc"] > 0.6  # popularity does help globally ...
    assert m["per_target_auroc_macro"] == 0.5  # ... but not in ranking a target's regulators
    assert m["n_targets_evaluated"] > 50

    perfect = evaluate(space.test.toarray().astype(float), space, n_random=0)
    assert perfect["auprc"] == 1.0 and perfect["auroc"] == 1.0
    assert perfect["per_target_auroc_macro"] == 1.0 and perfect["per_regulator_auroc_macro"] == 1.0
    assert perfect["early_precision_ratio"] == pytest.approx(1 / perfect["positive_rate"])


# --- random networks -----------------------------------------------------------------------
def test_sample_in_blocks_draws_distinct_items_per_block_uniformly():
    rng = np.random.default_rng(0)
    size, count = np.array([5, 8, 3, 6]), np.array([2, 6, 0, 3])  # block 1 uses the complement path
    start = np.r_[0, np.cumsum(size)[:-1]]
    draws = sample_in_blocks(rng, size, count, 4000)
    assert draws.shape == (4000, count.sum())
    block = np.searchsorted(start, draws, side="right") - 1
    for row_draws, row_block in zip(draws[:50], block[:50]):
        assert len(np.unique(row_draws)) == count.sum()
        np.testing.assert_array_equal(np.bincount(row_block, minlength=4), count)
    freq = np.bincount(draws.ravel(), minlength=size.sum()) / 4000
    np.testing.assert_allclose(freq, np.repeat(count / size, size), atol=0.04)


def test_random_network_pvalue_perfect_vs_random_scorer():
    rng = np.random.default_rng(5)
    space = random_space(rng, R=20, G=100, p_test=0.08)
    perfect = evaluate(space.test.toarray().astype(float), space, n_random=99)
    assert perfect["random_network_pvalue_auprc"] == pytest.approx(1 / 100)
    assert perfect["random_network_pvalue_auroc"] == pytest.approx(1 / 100)

    p = np.array([
        evaluate(np.random.default_rng(100 + i).random(space.shape), space, n_random=49, seed=i)[
            "random_network_pvalue_auprc"]
        for i in range(20)
    ])
    assert 0.3 < p.mean() < 0.7  # uniform on {1/50, ..., 1} has mean ~0.51
    assert (p < 0.05).sum() <= 3


def test_rewired_networks_keep_both_degrees():

    rng = np.random.default_rng(3)
    R, G = 25, 120
    hub = np.r_[np.full(10, 8.0), np.ones(G - 10)]  # hub targets: few genes hold many held-out edges
    space = random_space(rng, R=R, G=G, p_train=0.1, p_test=0.03, weights=np.broadcast_to(hub, (R, G)))
    c = space.candidates()
    held = c.flat[c.labels]
    sets = _rewired_sets(np.random.default_rng(0), c, 200)
    assert sets.shape == (200, len(held))
    chosen = c.flat[sets]  # candidates only, by construction of the positions
    for row in chosen:
        assert len(np.unique(row)) == len(held)  # no pair twice
        np.testing.assert_array_equal(np.bincount(row // G, minlength=R), np.bincount(held // G, minlength=R))
        np.testing.assert_array_equal(np.bincount(row % G, minlength=G), np.bincount(held % G, minlength=G))
    assert np.mean([np.isin(row, held).mean() for row in chosen]) < 0.5  # rewired, not the same network


def test_rewired_null_is_not_fooled_by_target_popularity():
    # a score of the target's popularity among held-out edges beats uniform random targets,
    # but not networks that keep every target's in-degree
    rng = np.random.default_rng(4)
    R, G = 30, 200
    hub = np.r_[np.full(15, 10.0), np.ones(G - 15)]
    space = random_space(rng, R=R, G=G, p_train=0.02, p_test=0.02, weights=np.broadcast_to(hub, (R, G)))
    popularity = np.broadcast_to(np.asarray(space.test.sum(0), dtype=float), space.shape)
    m = evaluate(popularity, space, n_random=99)
    assert m["random_network_pvalue_auroc"] == pytest.approx(1 / 100)
    assert m["rewired_network_pvalue_auroc"] > 0.2
    perfect = evaluate(space.test.toarray().astype(float), space, n_random=99)
    assert perfect["rewired_network_pvalue_auprc"] == pytest.approx(1 / 100)



def test_networks_drawn_once_give_each_method_the_same_pvalues():
    # evaluate_methods draws the null networks once per split for all its methods
    rng = np.random.default_rng(6)
    space = random_space(rng, R=20, G=100, p_test=0.08)
    networks = null_networks(space, n_random=30, seed=2)
    for i in range(3):
        s = np.random.default_rng(i).random(space.shape)
        assert evaluate(s, space, n_random=30, seed=2, networks=networks) == evaluate(s, space, n_random=30, seed=2)
    with pytest.raises(ValueError, match="null_networks"):  # drawn for another n_random
        evaluate(s, space, n_random=20, seed=2, networks=networks)

# --- degree matching -----------------------------------------------------------------------
def test_degree_matched_negatives_follow_positive_bins():
    rng = np.random.default_rng(7)
    R, G = 30, 200
    # training degrees vary a lot; held-out edges prefer high-degree regulators and targets
    train = sp.csr_matrix(rng.random((R, G)) < np.outer(np.linspace(0.01, 0.4, R), np.linspace(0.05, 1, G)))
    out_deg, in_deg = np.asarray(train.sum(1)).ravel(), np.asarray(train.sum(0)).ravel()
    w = np.outer(out_deg + 1, in_deg + 1).astype(float)
    test = sp.csr_matrix(rng.random((R, G)) < 0.15 * w / w.mean())
    genes = np.array([f"g{i}" for i in range(G)], dtype=object)
    space = EdgeSpace(genes[:R], genes, train, test)

    m = 4
    mask = degree_matched_mask(space, negatives_per_positive=m, seed=1)
    assert not (mask & ~space.candidate_mask()).any()
    log_bin = np.vectorize(lambda d: math.floor(math.log2(d + 1)))
    cell = log_bin(out_deg)[:, None] * 100 + log_bin(in_deg)[None, :]
    y = space.test.toarray()
    pos = np.bincount(cell[mask & y], minlength=cell.max() + 1)
    neg = np.bincount(cell[mask & ~y], minlength=cell.max() + 1)
    assert pos.sum() > 50
    np.testing.assert_array_equal(neg, m * pos)
    # seeded
    np.testing.assert_array_equal(mask, degree_matched_mask(space, negatives_per_positive=m, seed=1))

    # a score of the degree cell alone: helps globally, is exactly chance once matched
    res = evaluate(cell.astype(float), space, n_random=0, negatives_per_positive=m)
    assert res["auroc"] > 0.6
    assert res["degree_matched_auroc"] == pytest.approx(0.5, abs=1e-12)
    assert res["degree_matched_auprc_ratio"] < res["auprc_ratio"]
    # evaluate() scores exactly the pairs of degree_matched_mask with the same seed
    noisy = rng.random((R, G))
    matched = degree_matched_mask(space, negatives_per_positive=m, seed=3)
    y_m, s_m = y[matched], noisy[matched]
    expected_auc = (s_m[y_m][:, None] > s_m[~y_m][None, :]).mean()
    assert evaluate(noisy, space, n_random=0, negatives_per_positive=m, seed=3)["degree_matched_auroc"] == pytest.approx(expected_auc)


# --- enrichment ------------------------------------------------------------------------------
def test_regulator_enrichment_hypergeometric_by_hand():
    genes = [f"g{i}" for i in range(10)]
    train = pd.DataFrame({"tf": ["g0"], "target": ["g1"]})
    test = pd.DataFrame({"tf": ["g0", "g0", "g0", "g1"], "target": ["g2", "g3", "g5", "g0"]})
    space = EdgeSpace.from_edges(["g0", "g1", "g2"], genes, train, test)  # g2 has no held-out target
    s = np.zeros(space.shape)
    s[0] = [9, 9, 0.9, 0.1, 0.7, 0.8, 0, 0, 0, 0]  # top 3 candidates: g2 (hit), g5 (hit), g4
    s[1] = [-1, 9, 1, 1, 1, 1, 1, 1, 1, 1]  # g0, its only held-out target, ranked last
    table = regulator_enrichment(s, space, top_n=3)
    assert list(table["regulator"]) == ["g0", "g1"]
    g0, g1 = table.iloc[0], table.iloc[1]
    # g0: 8 candidates (g2..g9), 3 held-out, 3 drawn, 2 hits
    assert (g0.n_candidates, g0.n_targets, g0.n_top, g0.n_hits) == (8, 3, 3, 2)
    by_hand = (math.comb(3, 2) * math.comb(5, 1) + math.comb(3, 3)) / math.comb(8, 3)  # 16/56
    assert g0.pvalue == pytest.approx(by_hand)
    assert g0.pvalue == pytest.approx(stats.hypergeom.sf(1, 8, 3, 3))
    assert g0.expected == pytest.approx(9 / 8) and g0.fold_enrichment == pytest.approx(2 / (9 / 8))
    assert (g1.n_candidates, g1.n_hits, g1.pvalue) == (9, 0, 1.0)
    # Benjamini-Hochberg over (2/7, 1)
    np.testing.assert_allclose(table["fdr"], [min(1.0, 2 / 7 * 2), 1.0])
    summary = enrichment_summary(table)
    assert summary["enrichment_frac_significant"] == 0.0
    assert summary["enrichment_median_fold"] == pytest.approx((16 / 9 + 0) / 2)


def test_enrichment_table_agrees_with_the_metrics_row_under_ties():
    # grn_metrics carries evaluate's enrichment summary, grn_regulator_enrichment the table: with
    # tied scores both must break the ties the same way, or the two tables disagree
    space = random_space(np.random.default_rng(5), R=15, G=200, p_test=0.1)
    s = np.round(np.random.default_rng(6).random(space.shape), 1)
    for seed in (0, 1):
        summary = enrichment_summary(regulator_enrichment(s, space, top_n=10, seed=seed))
        m = evaluate(s, space, n_random=0, top_n=10, seed=seed)
        assert {k: m[k] for k in summary} == summary


# --- curves ----------------------------------------------------------------------------------
def test_curves_png_writes_a_png_atomically_that_fits_the_uis_metadata_dialog(tmp_path):
    rng = np.random.default_rng(9)
    space = random_space(rng, R=10, G=60)
    path = tmp_path / "out" / "curves.png"
    curves_png({"random": rng.random(space.shape), "oracle": space.test.toarray().astype(float)}, space, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    h, w, _ = mpimg.imread(path).shape
    assert 900 <= w <= 1000 and h > 0.7 * w  # two panels a row: a wider image is clipped in the UI
    assert [p.name for p in path.parent.iterdir()] == ["curves.png"]  # no temp file left
    with pytest.raises(ValueError, match="empty"):
        curves_png({}, space, path)
