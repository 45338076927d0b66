"""Calibrated simulator: a dataset folder the project reads, close to the real data, planted links
near their genes, the same cells however it is chunked, memory bounded by a chunk."""
import tracemalloc

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from multiome_assets import annotation, intervals
from multiome_assets.dataset import load_spec
from multiome_assets.preprocess import log_normalize
from multiome_assets.priors import load_prior_edges, read_tf_list
from multiome_assets.readers import read_dataset
from multiome_assets.simulate.calibration import measure_calibration, peak_gaps
from multiome_assets.simulate.dataset import (
    plan_simulation,
    simulate_cells,
    simulate_dataset,
)

from ..conftest import BUNDLED

N, G, P, CHUNK, WINDOW = 2_000, 1_000, 5_000, 700, 100_000


@pytest.fixture(scope="module")
def calibration():
    return measure_calibration()


@pytest.fixture(scope="module")
def written(tmp_path_factory, calibration):
    """The simulated dataset written in chunks of 700 cells, read back by the project's reader."""
    root = tmp_path_factory.mktemp("data")
    (root / "reference").symlink_to(BUNDLED / "reference")
    table = simulate_dataset(root / "datasets" / "sim", N, G, P, chunk_cells=CHUNK, seed=1, calibration=calibration)
    spec = load_spec("sim", root)
    model = plan_simulation(N, G, P, seed=1, calibration=calibration)
    return spec, read_dataset(spec), model, table


def test_written_dataset_is_the_generators_cells(written):
    spec, mo, model, _ = written
    assert (mo.rna.n_obs, mo.rna.n_vars, mo.atac.n_vars) == (N, G, P)
    counts, atac, cell_types = simulate_cells(model, 0, N)  # all at once, in memory
    assert (mo.rna.X != counts).nnz == 0 and (mo.atac.X != atac).nnz == 0
    np.testing.assert_array_equal(mo.rna.obs["cell_type"].astype(str), cell_types)
    assert spec.rna_values == "raw_counts" and np.array_equal(mo.rna.X.data, np.round(mo.rna.X.data))
    assert set(np.unique(mo.atac.X.data)) == {1.0}


def test_chunk_boundaries_do_not_change_the_cells(written):
    model = written[2]
    whole = simulate_cells(model, 0, N)
    parts = [simulate_cells(model, a, b) for a, b in ((0, 333), (333, 1_501), (1_501, N))]
    for i in (0, 1):
        assert (sp.vstack([p[i] for p in parts], format="csr") != whole[i]).nnz == 0
    other_seed = plan_simulation(200, G, P, seed=2, calibration=model.calibration)
    assert (simulate_cells(other_seed, 0, 200)[0] != whole[0][:200]).nnz > 0


def test_statistics_are_close_to_the_real_datas(written, calibration):
    _, mo, _, table = written
    # recomputed from the files, against the references read directly
    bmmc = read_dataset(load_spec("bmmc_starter")).rna.layers["counts"]
    snare = read_dataset(load_spec("snareseq_hesc")).atac.X
    umi_per_gene = np.median(np.asarray(mo.rna.X.sum(1)).ravel()) / G
    real_umi_per_gene = np.median(np.asarray(bmmc.sum(1)).ravel()) / bmmc.shape[1]
    assert 0.8 < umi_per_gene / real_umi_per_gene < 1.25
    detection = np.median(np.diff(mo.rna.X.tocsc().indptr)) / N
    assert 0.7 < detection / np.median(np.diff(bmmc.tocsc().indptr) / bmmc.shape[0]) < 1.3
    open_fraction = np.median(np.diff(mo.atac.X.indptr)) / P
    assert 0.7 < open_fraction / (np.median(np.diff(snare.indptr)) / snare.shape[1]) < 1.3
    assert np.median(mo.rna.X.data) == 1  # as in BMMC: most nonzero counts are 1

    # the printed table: every statistic's median within a factor 1.35 of the real one, except
    # the peak gaps: 1,000 genes leave the genome emptier than the reference (1.6x at this size)
    ratios = table.set_index("statistic")["median_ratio"]
    assert len(ratios) == 8
    assert ratios.drop("peak_gap_bp_at_reference_density").between(1 / 1.35, 1.35).all(), ratios
    assert 0.5 < ratios["peak_gap_bp_at_reference_density"] < 2
    sim_umi = table.set_index("statistic").loc["rna_umi_per_cell_per_1k_genes", "sim_median"]
    assert sim_umi == pytest.approx(umi_per_gene * 1000)  # the table describes the written data
    gaps = peak_gaps(mo.atac.var)
    assert (gaps > 0).all()  # no overlapping peaks


def test_planted_edges_and_links_are_consistent(written):
    spec, mo, model, _ = written
    edges = pd.read_csv(spec.folder / "planted_edges.csv")
    links = pd.read_csv(spec.folder / "planted_links.csv")
    tfs = read_tf_list(spec.tf_list)
    assert edges.source.isin(tfs).all() and edges.target.isin(mo.rna.var_names).all()
    assert not edges.target.isin(edges.source).any()  # regulators are not regulated
    assert edges.groupby("target").size().between(1, 3).all()
    prior = load_prior_edges(spec.prior, mo.rna.var_names, tfs)  # the dataset's prior is the planted network
    assert len(prior) == len(edges)

    # each target has one enhancer, within the window of the gene's annotated TSS
    assert set(links.gene) == set(edges.target) and not links.gene.duplicated().any()
    genes = annotation.match_genes(mo.rna.var_names, mo.rna.var["gene_ids"], annotation.read_annotation(spec.annotation))
    assert (genes.matched_by == "ensembl_id").all()
    tss = genes.set_index("gene").loc[links.gene]
    peaks = mo.atac.var.loc[links.peak]
    assert (peaks.Chromosome.to_numpy() == tss.chrom.to_numpy()).all()
    t = tss.tss.to_numpy(np.int64)
    distance = np.maximum(0, np.maximum(peaks.Start.to_numpy() - t, t - peaks.End.to_numpy() + 1))
    np.testing.assert_array_equal(distance, links.distance)
    assert distance.max() <= WINDOW
    # so the project's candidate sets find every planted link
    cands = intervals.candidate_sets(genes, mo.atac.var, WINDOW, max_candidates=10_000)
    found = links.merge(cands, on=["gene", "peak"], how="left")
    assert found.peak_index.notna().all()


def test_targets_follow_regulators_and_enhancers(written):
    _, mo, model, _ = written
    X = log_normalize(mo.rna.X).toarray()  # per library: raw counts all follow the cell's UMI
    Z = (X - X.mean(0)) / (X.std(0) + 1e-9)
    col = mo.rna.var_names
    tf, tgt = col.get_indexer(model.edges.tf), col.get_indexer(model.edges.target)
    planted = (Z[:, tf] * Z[:, tgt]).mean(0)
    rng = np.random.default_rng(0)
    random_tf = model.regulators[rng.integers(0, len(model.regulators), size=len(tgt))]
    random = (Z[:, random_tf] * Z[:, tgt]).mean(0)
    assert np.abs(planted).mean() > 1.8 * np.abs(random).mean()  # measured 0.072 vs 0.030
    assert (np.sign(planted) == np.sign(model.edges.weight)).mean() > 0.8  # measured 0.92
    A = mo.atac.X[:, model.enhancer].toarray()
    A = (A - A.mean(0)) / (A.std(0) + 1e-9)
    r = (A * Z[:, model.targets]).mean(0)
    assert r.mean() > 3 * np.abs((A[:, ::-1] * Z[:, model.targets]).mean(0)).mean()


def _traced_write(folder, n_cells, calibration) -> tuple[int, int]:
    """(peak traced bytes, RNA nonzeros) of writing n_cells x 500 genes x 1,000 peaks, 500 cells a chunk."""
    tracemalloc.start()
    try:
        simulate_dataset(folder, n_cells, 500, 1_000, chunk_cells=500, calibration=calibration)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    with h5py.File(folder / "rna.h5ad") as f:
        assert f["X"].attrs["shape"][0] == n_cells
        return peak, f["X/data"].shape[0]


def test_memory_is_bounded_by_a_chunk_not_the_dataset(tmp_path, calibration):
    """Four times the cells: the whole sparse RNA grows by ~10 MB (4 bytes value + 4 index per
    nonzero; ~24 MB dense), the writer's peak by a small fraction of that (barcodes and cell types
    are per cell; no matrix is)."""
    small, small_nnz = _traced_write(tmp_path / "small", 4_000, calibration)
    large, large_nnz = _traced_write(tmp_path / "large", 16_000, calibration)
    sparse_growth = (large_nnz - small_nnz) * 8
    assert sparse_growth > 8e6
    assert large - small < 0.25 * sparse_growth, f"peak {small / 1e6:.1f} -> {large / 1e6:.1f} MB"


def test_sizes_the_annotation_cannot_hold_are_refused(calibration):
    with pytest.raises(ValueError, match="annotation has .* genes"):
        plan_simulation(10, 100_000, 1_000, calibration=calibration)
