"""Readers: every supported format gives the same paired cells; bad input names the file and the problem."""
import h5py
import mudata
import numpy as np
import pytest
import scipy.sparse as sp

from multiome_assets.dataset import DatasetError, load_spec, validate_key
from multiome_assets.readers import parse_peaks, read_dataset

from .conftest import write_dataset


def _write_10x_h5(path, rna, atac):
    """A Cell Ranger ARC feature-barcode matrix: features × barcodes CSC, Gene Expression then Peaks."""
    X = sp.hstack([rna.layers["counts"], atac.layers["counts"]]).T.tocsc().astype(np.int32)
    peaks = atac.var_names.str.replace("-", ":", n=1)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["barcodes"] = np.array(rna.obs_names, dtype="S")
        m["data"], m["indices"], m["indptr"] = X.data, X.indices, X.indptr
        m["shape"] = np.array(X.shape)
        feats = m.create_group("features")
        feats["id"] = np.array(list(rna.var["gene_ids"]) + list(peaks), dtype="S")
        feats["name"] = np.array(list(rna.var_names) + list(peaks), dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * rna.n_vars + ["Peaks"] * atac.n_vars, dtype="S")


def test_three_formats_read_the_same_cells(data_root, bmmc):
    rna, atac = bmmc
    folder = write_dataset(data_root, "pair", rna, atac, rna_counts_layer="counts")
    mudata.MuData({"rna": rna, "atac": atac}).write_h5mu(folder / "both.h5mu")
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5", rna, atac)
    (data_root / "datasets/mu").mkdir()
    (data_root / "datasets/mu/dataset.yaml").write_text(
        "format: h5mu\nfiles: {h5mu: ../pair/both.h5mu}\nrna_counts_layer: counts\n")
    (data_root / "datasets/tenx").mkdir()
    (data_root / "datasets/tenx/dataset.yaml").write_text(
        "format: 10x_h5\nfiles: {h5: ../pair/filtered_feature_bc_matrix.h5}\n")

    pair, mu, tenx = (read_dataset(load_spec(k)) for k in ("pair", "mu", "tenx"))
    for mo in (mu, tenx):
        assert list(mo.rna.obs_names) == list(pair.rna.obs_names)
        assert list(mo.atac.var[["Chromosome", "Start", "End"]].itertuples(index=False)) == list(
            pair.atac.var[["Chromosome", "Start", "End"]].itertuples(index=False))
    assert (tenx.rna.X != pair.rna.layers["counts"]).nnz == 0
    assert (mu.atac.X != pair.atac.X).nnz == 0


@pytest.mark.parametrize("modality", ["rna", "atac"])
def test_a_single_modality_folder_reads_its_cells_and_no_other_features(data_root, bmmc, modality):
    rna, atac = bmmc
    folder = write_dataset(data_root, "pair", rna, atac)
    (data_root / f"datasets/{modality}_only").mkdir()
    (data_root / f"datasets/{modality}_only/dataset.yaml").write_text(
        f"format: h5ad_{modality}\nfiles: {{{modality}: ../pair/{modality}.h5ad}}\ntranslator_from: bmmc_starter\n")
    spec = load_spec(f"{modality}_only")
    assert spec.modalities == (modality,) and not spec.paired and spec.translator_from == "bmmc_starter"
    mo = read_dataset(spec)
    assert mo.modalities == (modality,)
    assert list(mo.rna.obs_names) == list(mo.atac.obs_names) == list(rna.obs_names)
    present, absent = (mo.rna, mo.atac) if modality == "rna" else (mo.atac, mo.rna)
    assert absent.n_vars == 0 and present.n_vars == (rna if modality == "rna" else atac).n_vars
    assert (folder / f"{modality}.h5ad").exists()


def test_barcodes_are_intersected_in_rna_order(data_root, bmmc):
    rna, atac = bmmc
    atac = atac[np.random.default_rng(1).permutation(atac.n_obs)[:400]].copy()
    write_dataset(data_root, "shuffled", rna[:450].copy(), atac)
    mo = read_dataset(load_spec("shuffled"))
    expected = [b for b in rna.obs_names[:450] if b in set(atac.obs_names)]
    assert list(mo.rna.obs_names) == expected == list(mo.atac.obs_names)
    # the ATAC rows moved with their barcodes
    first = expected[0]
    assert (mo.atac[first].X != sp.csr_matrix(atac[first].X)).nnz == 0


@pytest.mark.parametrize("name", ["chr1:100-200", "chr1-100-200", "chr1_100_200"])
def test_peak_name_styles(name):
    parsed = parse_peaks([name])
    assert parsed.iloc[0].tolist() == ["chr1", 100, 200]


def test_unparseable_peaks_name_the_file(data_root, bmmc):
    rna, atac = bmmc
    atac = atac.copy()
    atac.var_names = ["peak_%d" % i for i in range(atac.n_vars)]
    folder = write_dataset(data_root, "badpeaks", rna, atac)
    with pytest.raises(DatasetError, match=r"atac\.h5ad: 600 of 600 peak names"):
        read_dataset(load_spec("badpeaks"))
    assert folder.exists()


def test_no_shared_barcodes(data_root, bmmc):
    rna, atac = bmmc
    atac = atac.copy()
    atac.obs_names = ["other-%d" % i for i in range(atac.n_obs)]
    write_dataset(data_root, "nooverlap", rna, atac)
    with pytest.raises(DatasetError, match="share no cell barcodes"):
        read_dataset(load_spec("nooverlap"))


@pytest.mark.parametrize("value,problem", [(np.nan, "NaN"), (-1.0, "negative")])
def test_nan_or_negative_values(data_root, bmmc, value, problem):
    rna, atac = bmmc
    rna = rna.copy()
    X = sp.csr_matrix(rna.X)
    X.data[0] = value
    rna.X = X
    write_dataset(data_root, "badvalues", rna, atac)
    with pytest.raises(DatasetError, match=rf"rna\.h5ad: X holds 1 {problem}"):
        read_dataset(load_spec("badvalues"))


def test_all_zero_rna_says_no_cell_has_a_count(data_root, bmmc):
    """Issue 17: an all-zero RNA matrix was refused as "layers['counts'] holds non-integer values"."""
    rna, atac = bmmc
    rna = rna.copy()
    rna.X = sp.csr_matrix(rna.shape, dtype=np.float32)
    rna.layers["counts"] = sp.csr_matrix(rna.shape, dtype=np.float32)
    write_dataset(data_root, "zeros", rna, atac, rna_counts_layer="counts")
    with pytest.raises(DatasetError, match=r"zeros/rna\.h5ad: no cell has any RNA count \(X and layers\['counts'\] all zero"):
        read_dataset(load_spec("zeros"))


def test_duplicate_gene_names_without_ids_or_with_duplicate_ids_are_refused(data_root, bmmc):
    rna, atac = bmmc
    rna = rna.copy()
    names = list(rna.var_names)
    names[1] = names[0]
    rna.var_names = names
    write_dataset(data_root, "dupids", rna.copy(), atac, rna_counts_layer="counts")  # still one id per gene
    assert read_dataset(load_spec("dupids")).rna.n_vars == rna.n_vars
    ids = list(rna.var["gene_ids"])
    ids[1] = ids[0]
    rna.var["gene_ids"] = ids
    write_dataset(data_root, "dupids", rna.copy(), atac)
    with pytest.raises(DatasetError, match=rf"rna\.h5ad: duplicate gene ids in var\['gene_ids'\], e\.g\. \['{ids[0]}'\]"):
        read_dataset(load_spec("dupids"))
    del rna.var["gene_ids"]
    write_dataset(data_root, "dupgenes", rna, atac)
    with pytest.raises(DatasetError, match=rf"rna\.h5ad: 1 duplicate gene names, e\.g\. \['{names[0]}'\], and no gene id column"):
        read_dataset(load_spec("dupgenes"))


# Symbols that Cell Ranger ARC's GRCh38-2020-A reference gives to two Ensembl ids each (8 of its 10;
# the ids as in the bundled Ensembl 93 annotation, which has both of each)
SHARED_SYMBOLS = {"TBCE": ("ENSG00000285053", "ENSG00000284770"), "MATR3": ("ENSG00000280987", "ENSG00000015479"),
                  "HSPA14": ("ENSG00000284024", "ENSG00000187522"), "POLR2J3": ("ENSG00000168255", "ENSG00000285437"),
                  "CYB561D2": ("ENSG00000114395", "ENSG00000271858"), "LINC01238": ("ENSG00000237940", "ENSG00000261186"),
                  "LINC01505": ("ENSG00000234323", "ENSG00000234229"), "TMSB15B": ("ENSG00000158427", "ENSG00000269226")}


def _with_shared_symbols(rna, rng):
    """`rna` plus both copies of each shared symbol, in Cell Ranger's order (by id as listed); the
    second copy of each gets more counts than the first."""
    import anndata as ad
    import pandas as pd

    n = rna.n_obs
    counts = np.column_stack([rng.poisson(lam, n) for _ in SHARED_SYMBOLS for lam in (0.5, 3.0)]).astype(np.float32)
    extra = ad.AnnData(sp.csr_matrix(counts), obs=rna.obs[[]],
                       var=pd.DataFrame({"gene_ids": [i for pair in SHARED_SYMBOLS.values() for i in pair]},
                                        index=[s for s in SHARED_SYMBOLS for _ in range(2)]))
    extra.layers["counts"] = extra.X.copy()
    both = ad.concat([rna[:, :].copy(), extra], axis=1, merge="first")
    both.obs = rna.obs.copy()
    return both


def test_a_cell_ranger_arc_file_with_shared_symbols_builds_the_foundation(data_root, bmmc):
    """A filtered_feature_bc_matrix.h5 as Cell Ranger ARC writes it, with the reference's shared
    symbols: read, each symbol named once (its expressed copy), the other copy kept under its id;
    annotated by id; prior edges naming the symbol reach the expressed copy."""
    import dagster as dg
    import pandas as pd
    import yaml

    from multiome_assets import warehouse
    from multiome_assets.definitions import ASSETS, RESOURCES

    rna, atac = bmmc
    rna = _with_shared_symbols(rna, np.random.default_rng(0))
    folder = data_root / "datasets" / "arc"
    folder.mkdir()
    _write_10x_h5(folder / "filtered_feature_bc_matrix.h5", rna, atac)
    tf = "SPI1" if "SPI1" in rna.var_names else rna.var_names[0]
    pd.DataFrame({"source": [tf] * 3, "target": ["TBCE", "MATR3", rna.var_names[5]]}).to_csv(folder / "prior.csv", index=False)
    (folder / "tfs.txt").write_text(f"{tf}\n")
    (folder / "dataset.yaml").write_text(yaml.safe_dump({
        "format": "10x_h5", "files": {"h5": "filtered_feature_bc_matrix.h5"}, "prior": "prior.csv", "tf_list": "tfs.txt",
        "qc": {"min_cells_per_gene": 1, "min_cells_per_peak": 1, "min_genes_per_cell": 1, "min_peaks_per_cell": 1}}))

    mo = read_dataset(load_spec("arc"))
    for symbol, (first, second) in SHARED_SYMBOLS.items():
        assert mo.rna.var.loc[symbol, "gene_ids"] == second  # the copy with more counts keeps the symbol
        assert mo.rna.var.loc[f"{symbol}_{first}", "symbol"] == symbol
    assert mo.rna.var_names.is_unique and sorted(mo.rna.uns["renamed_duplicate_symbols"]) == sorted(
        f"{s}_{ids[0]}" for s, ids in SHARED_SYMBOLS.items())

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", ["arc"])
    assert dg.materialize(ASSETS, partition_key="arc", instance=instance, resources=RESOURCES,
                          selection="group:foundation").success
    genes = warehouse.read_table("gene_annotation", "arc").set_index("gene")
    for symbol, (first, second) in SHARED_SYMBOLS.items():
        assert genes.loc[symbol, "gene_id"] == second and genes.loc[f"{symbol}_{first}", "gene_id"] == first
        assert genes.loc[symbol, "matched_by"] == "ensembl_id"
    edges = warehouse.read_table("prior_edges", "arc")
    assert {"TBCE", "MATR3"} <= set(edges.target)


def test_truncated_h5_file(data_root, bmmc):
    rna, atac = bmmc
    folder = write_dataset(data_root, "truncated", rna, atac)
    data = (folder / "rna.h5ad").read_bytes()
    (folder / "rna.h5ad").write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"rna\.h5ad: cannot be read as \.h5ad"):
        read_dataset(load_spec("truncated"))


def test_missing_file_named_in_yaml(data_root, bmmc):
    rna, atac = bmmc
    folder = write_dataset(data_root, "missing", rna, atac)
    (folder / "atac.h5ad").unlink()
    with pytest.raises(DatasetError, match=r"dataset\.yaml: file 'atac\.h5ad' does not exist"):
        load_spec("missing")


def test_file_outside_data_dir_is_refused(data_root, bmmc):
    rna, atac = bmmc
    folder = write_dataset(data_root, "escape", rna, atac)
    (folder / "dataset.yaml").write_text("format: h5ad_pair\nfiles: {rna: ../../../etc/passwd, atac: atac.h5ad}\n")
    with pytest.raises(DatasetError, match="points outside"):
        load_spec("escape")


@pytest.mark.parametrize("settings, problem", [
    ({"candidate_windw": 5000}, r"unknown settings \['candidate_windw'\]"),
    ({"candidate_window": "100 kb"}, "candidate_window must be a whole number"),
    ({"qc": {"min_cells_per_gene": "ten"}}, "qc.min_cells_per_gene must be a whole number"),
    ({"genome": "mm10"}, "genome 'mm10' is not supported"),
    ({"cell_type_column": ["cell_type"]}, "cell_type_column must be a text"),
    ({"translator_from": "no_such_dataset"}, "translator_from 'no_such_dataset' is no dataset folder"),
    ({"translator_from": "badsettings"}, "translator_from names this dataset itself"),
    ({"format": "h5ad_rna", "files": {"rna": "rna.h5ad"}},
     r"a dataset with only RNA .* add `translator_from: <key>` naming one \(dataset folders: bmmc_starter\)"),
])
def test_bad_settings_name_the_yaml(data_root, bmmc, settings, problem):
    # a typo must not silently fall back to a default
    rna, atac = bmmc
    write_dataset(data_root, "badsettings", rna, atac, **settings)
    with pytest.raises(DatasetError, match=r"dataset\.yaml: " + problem):
        load_spec("badsettings")


def test_windows_in_scientific_notation(data_root, bmmc):
    rna, atac = bmmc
    write_dataset(data_root, "sci", rna, atac, candidate_window="1e5")  # YAML reads 1e5 as text
    assert load_spec("sci").candidate_window == 100_000


def test_missing_cell_type_column_names_the_yaml(data_root, bmmc):
    # otherwise no per-cell-type GRN is made and nothing says why
    rna, atac = bmmc
    write_dataset(data_root, "nolabels", rna, atac, cell_type_column="celltype")
    with pytest.raises(DatasetError, match=r"dataset\.yaml: cell_type_column 'celltype' is not a column"):
        read_dataset(load_spec("nolabels"))


@pytest.mark.parametrize("key", ["../x", "a/b", "Upper", "", "x" * 65, "sp ace"])
def test_bad_partition_keys(key):
    with pytest.raises(DatasetError, match="invalid dataset key"):
        validate_key(key)
