"""Baselines: correlation, WGCNA TOM, GRNBoost2, degree baselines, external GRN import."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

from multiome_assets.grn.baselines import (
    BASELINES,
    degree_baselines,
    grnboost2_scores,
    import_external_grn,
    pearson_scores,
    soft_threshold_power,
    spearman_scores,
    wgcna_scores,
)
from multiome_assets.grn import expression
from multiome_assets.grn.edge_space import EdgeSpace


@pytest.fixture
def counts():
    """(60 cells, 7 genes) with ties and one constant gene; regulators g0, g2, g5."""
    rng = np.random.default_rng(0)
    X = rng.poisson(1.5, size=(60, 7)).astype(float)
    X[:, 1] += X[:, 0]  # a correlated pair
    X[:, 4] = 3.0  # zero variance
    genes = np.array([f"g{i}" for i in range(7)], dtype=object)
    return np.log1p(X), genes, np.array(["g0", "g2", "g5"], dtype=object)


def test_pearson_matches_corrcoef_on_dense_and_sparse(counts):
    X, genes, regs = counts
    reg_idx = [0, 2, 5]
    with np.errstate(invalid="ignore"):  # corrcoef divides by the constant gene's 0 sd
        expected = np.abs(np.corrcoef(X, rowvar=False))[reg_idx]
    expected[:, 4] = 0.0  # corrcoef gives NaN for the constant gene
    for x in (X, sp.csr_matrix(X)):
        got = pearson_scores(x, genes, regs)
        assert got.shape == (3, 7)
        np.testing.assert_allclose(got, expected, atol=1e-12)


def test_spearman_matches_scipy_with_ties(counts):
    X, genes, regs = counts
    with np.errstate(invalid="ignore"):
        rho = spearmanr(X).statistic
    expected = np.abs(rho)[[0, 2, 5]]
    expected[:, 4] = 0.0
    np.testing.assert_allclose(spearman_scores(X, genes, regs), expected, atol=1e-12)


def test_spearman_of_sparse_input_matches_scipy_with_ties_zeros_and_negatives():
    rng = np.random.default_rng(3)
    X = rng.poisson(0.7, size=(80, 6)).astype(float) * rng.choice([-1.0, 1.0, 1.0], size=(80, 6))
    X[:, 2] = np.abs(X[:, 2])  # non-negative: the zeros rank lowest
    X[:5, 3] = 0.0
    genes = np.array([f"g{i}" for i in range(6)], dtype=object)
    sparse = sp.csr_matrix(X)
    sparse.data[:3] = 0.0  # explicit zeros count as zeros
    expected = np.abs(spearmanr(sparse.toarray()).statistic)[[1, 2]]
    got = spearman_scores(sparse, genes, ["g1", "g2"])
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize("method", ["pearson", "spearman", "wgcna"])
def test_sparse_expression_is_read_a_block_of_cells_at_a_time_never_whole(method, monkeypatch):
    """The baselines hold (R, G) and (G, G) results, never the dense (cells, G) expression: 12,000 cells
    x 10,000 genes would be 1 GB a copy."""
    rng = np.random.default_rng(4)
    n, G = 10_000, 120
    X = sp.random(n, G, density=0.02, format="csr", random_state=rng, data_rvs=lambda k: rng.gamma(2.0, size=k))
    genes = np.array([f"g{i}" for i in range(G)], dtype=object)
    regs = genes[:10]
    whole = BASELINES[method](X.toarray(), genes, regs)
    monkeypatch.setattr(expression, "BLOCK_ELEMENTS", 50 * G)  # blocks of 50 cells
    tracemalloc.start()
    try:
        got = BASELINES[method](X, genes, regs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(got, whole, rtol=1e-5 if method == "wgcna" else 1e-10, atol=1e-7)
    assert peak < n * G * 8 / 4, f"peak {peak / 1e6:.1f} MB: the dense matrix is {n * G * 8 / 1e6:.1f} MB"


@pytest.mark.parametrize("method", ["pearson", "spearman", "wgcna"])
def test_zero_variance_gene_scores_zero_not_nan(counts, method):
    X, genes, regs = counts
    got = BASELINES[method](X, genes, regs)
    assert np.isfinite(got).all()
    assert (got[:, 4] == 0).all()


def naive_tom(X: np.ndarray, power: float) -> np.ndarray:
    """Textbook unsigned TOM by explicit loops (tiny inputs only)."""
    G = X.shape[1]
    cor = np.corrcoef(X, rowvar=False)
    a = np.abs(cor) ** power
    np.fill_diagonal(a, 0.0)
    k = a.sum(axis=1)
    tom = np.eye(G)
    for i in range(G):
        for j in range(G):
            if i != j:
                shared = sum(a[i, u] * a[u, j] for u in range(G) if u not in (i, j))
                tom[i, j] = (shared + a[i, j]) / (min(k[i], k[j]) + 1 - a[i, j])
    return tom


@pytest.mark.parametrize("power", [1, 6])
def test_wgcna_equals_naive_tom(power):
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 2))
    X = np.column_stack([base[:, 0], base[:, 0] + 0.5 * rng.normal(size=40), base[:, 1],
                         base[:, 1] - 0.3 * rng.normal(size=40), rng.normal(size=40), base.sum(1)])
    genes = np.array(list("abcdef"), dtype=object)
    regs = np.array(["d", "a"], dtype=object)
    got = wgcna_scores(X, genes, regs, power=power)
    np.testing.assert_allclose(got, naive_tom(X, power)[[3, 0]], rtol=1e-5, atol=1e-6)


def test_wgcna_auto_power_uses_picked_power(counts):
    X, genes, regs = counts
    beta = soft_threshold_power(X, genes)
    np.testing.assert_array_equal(wgcna_scores(X, genes, regs, power="auto"),
                                  wgcna_scores(X, genes, regs, power=beta))


def test_unknown_regulator_raises(counts):
    X, genes, _ = counts
    with pytest.raises(ValueError, match="not among `genes`"):
        pearson_scores(X, genes, ["g0", "NOPE"])


def planted(seed: int = 0):
    """300 cells, 5 regulators, 8 targets; target t = f(regulator a_t) + weaker g(b_t) + noise."""
    rng = np.random.default_rng(seed)
    n, n_reg, n_tgt = 300, 5, 8
    R = rng.normal(size=(n, n_reg))
    first = rng.integers(0, n_reg, n_tgt)
    second = (first + rng.integers(1, n_reg, n_tgt)) % n_reg  # differs from `first`
    T = np.tanh(2 * R[:, first]) + 0.3 * R[:, second] ** 2 + 0.3 * rng.normal(size=(n, n_tgt))
    X = np.column_stack([R, T])
    genes = np.array([f"TF{i}" for i in range(n_reg)] + [f"T{i}" for i in range(n_tgt)], dtype=object)
    return X, genes, genes[:n_reg], first


def test_grnboost2_ranks_planted_regulator_first():
    X, genes, regs, first = planted()
    scores = grnboost2_scores(X, genes, regs, n_workers=2)
    assert scores.shape == (5, 13)
    assert (np.argmax(scores[:, 5:], axis=0) == first).mean() >= 0.75
    # a regulator-target is never its own regressor, but the other regulators explain it
    np.testing.assert_array_equal(np.diag(scores[:, :5]), 0.0)
    assert (scores[:, :5].sum(axis=0) > 0).all()
    # max_targets fits the most variable genes only, in one process, with the same result
    few = grnboost2_scores(X, genes, regs, n_workers=1, max_targets=3)
    fitted = np.isfinite(few).all(axis=0)
    assert set(np.flatnonzero(fitted)) == set(np.argsort(-X.var(axis=0))[:3])
    assert np.isneginf(few[:, ~fitted]).all()
    np.testing.assert_array_equal(few[:, fitted], scores[:, fitted])
    # a cell budget: fitted on 150 of the 300 cells, the planted regulators still lead
    half = grnboost2_scores(X, genes, regs, n_workers=1, max_cells=150)
    assert (np.argmax(half[:, 5:], axis=0) == first).mean() >= 0.75 and not np.array_equal(half, scores)
    np.testing.assert_array_equal(grnboost2_scores(X, genes, regs, n_workers=1, max_cells=300), scores)


def test_grnboost2_arboreto_mode_equals_infer_partial_network():
    """The lines taken over from arboreto (its settings and early stopping) give its own numbers."""
    arboreto = pytest.importorskip("arboreto.core")  # in the dev extras only: the package itself does not need it
    from arboreto.core import SGBM_KWARGS, infer_partial_network

    from multiome_assets.grn import grnboost2

    assert grnboost2.SGBM_KWARGS == SGBM_KWARGS and grnboost2.EARLY_STOP_WINDOW_LENGTH == arboreto.EARLY_STOP_WINDOW_LENGTH

    X, genes, regs, _ = planted(seed=1)
    scores = grnboost2_scores(X, genes, regs, n_workers=1, early_stopping="arboreto", seed=7)
    for j in (2, 6):  # a regulator-target and a plain target
        links = infer_partial_network("GBM", SGBM_KWARGS, X[:, :5], list(regs), genes[j], X[:, j], seed=7)
        expected = np.zeros(5)
        expected[pd.Index(regs).get_indexer(links["TF"])] = links["importance"]
        np.testing.assert_allclose(scores[:, j], expected)


@pytest.fixture
def space():
    train = pd.DataFrame({"tf": ["A", "A", "A", "B", "C"], "target": ["x", "y", "B", "x", "x"]})
    test = pd.DataFrame({"tf": ["B", "C"], "target": ["y", "A"]})
    return EdgeSpace.from_edges(["A", "B", "C"], ["A", "B", "C", "x", "y"], train, test)


def test_degree_baselines_match_hand_counts(space):
    got = degree_baselines(space)
    out_deg = np.array([3, 1, 1])  # A: x, y, B; B: x; C: x
    in_deg = np.array([0, 1, 0, 3, 1])  # A, B, C, x, y
    np.testing.assert_array_equal(got["degree_tf_out"], np.repeat(out_deg[:, None], 5, axis=1))
    np.testing.assert_array_equal(got["degree_target_in"], np.repeat(in_deg[None, :], 3, axis=0))
    np.testing.assert_array_equal(got["degree_product"], np.outer(out_deg + 1, in_deg + 1))


def test_degree_product_ranks_unseen_targets_by_their_regulator(space):
    """A target with no training edge (A, C: in-degree 0) still ranks by its regulator's out-degree."""
    product = degree_baselines(space)["degree_product"]
    unseen = [0, 2]  # genes A and C
    assert (product[0, unseen] > product[1, unseen]).all()  # A regulates 3, B 1


def grn_table():
    return pd.DataFrame({
        "TF": ["B", "A", "A", "ZZZ", "C", "B"],
        "Gene": ["y", "x", "x", "x", "nope", "y"],
        "w": [0.5, 2.0, 3.0, 9.0, 7.0, 0.25],
    })


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_import_external_grn_maps_names_and_ranks_missing_last(space, tmp_path, suffix):
    path = tmp_path / f"grn{suffix}"
    table = grn_table()
    if suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    got = import_external_grn(path, space, source_col="TF", target_col="Gene", score_col="w")
    assert got.shape == (3, 5)
    assert got[0, 3] == 3.0  # A -> x listed twice: the max
    assert got[1, 4] == 0.5  # B -> y listed twice: the max
    listed = np.zeros((3, 5), dtype=bool)
    listed[0, 3] = listed[1, 4] = True
    assert (got[~listed] == 0.5 - 1).all()  # unlisted pairs below every listed one


def test_import_external_grn_errors_name_the_file(space, tmp_path):
    path = tmp_path / "wrong_columns.csv"
    grn_table().to_csv(path, index=False)
    with pytest.raises(ValueError, match="wrong_columns.csv.*source"):
        import_external_grn(path, space)
    outside = pd.DataFrame({"source": ["ZZZ", "A"], "target": ["x", "nope"], "score": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"none of its 2 rows.*1 sources.*1 targets"):
        import_external_grn(outside, space)
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.tsv: cannot be read"):
        import_external_grn(empty, space)


def _spawned_workers(pid: int) -> list[int]:
    """PIDs of the multiprocessing spawn workers among `pid`'s children (not its resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    workers = []
    for child in (children.read_text().split() if children.exists() else []):
        cmdline = Path(f"/proc/{child}/cmdline")
        if cmdline.exists() and b"spawn_main" in cmdline.read_bytes():
            workers.append(int(child))
    return workers


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_grnboost2_workers_die_with_a_killed_run():
    """A run killed mid-GRNBoost2 (SIGKILL: no cleanup) must not leave its pool workers fitting."""
    script = (
        "import numpy as np\n"
        "from multiome_assets.grn.baselines import grnboost2_scores\n"
        "if __name__ == '__main__':\n"
        "    X = np.random.default_rng(0).poisson(2.0, (400, 3000)).astype(float)\n"
        "    genes = np.array([f'g{i}' for i in range(3000)], dtype=object)\n"
        "    grnboost2_scores(X, genes, genes[:200], n_workers=2)\n"  # minutes of work
    )
    run, workers = subprocess.Popen([sys.executable, "-c", script]), []
    try:
        deadline = time.monotonic() + 60
        while len(workers := _spawned_workers(run.pid)) < 2:
            assert run.poll() is None and time.monotonic() < deadline, "the pool never started its 2 workers"
            time.sleep(0.2)
        time.sleep(1.0)  # the workers are past their initializer, fitting
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), f"workers {workers} outlived the killed run"
    finally:  # whatever happened, stop what this test started
        run.kill()
        run.wait()
        for pid in filter(_alive, workers):
            os.kill(pid, signal.SIGKILL)


def test_unknown_baseline_lists_the_known_ones():
    from multiome_assets.grn.baselines import expression_baselines

    with pytest.raises(ValueError, match=r"unknown baseline\(s\) \['genie3'\]; known: \['grnboost2', "):
        expression_baselines(["pearson", "genie3"], None, [], [])
