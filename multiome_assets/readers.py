"""Readers for paired RNA + ATAC: a pair of .h5ad files, one .h5mu, or a 10x Cell Ranger ARC .h5.

Each returns a `Multiome`: two AnnData objects over the same barcodes in the same order,
with sparse float32 matrices. Bad input raises `DatasetError` naming the file and the problem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import h5py
import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.dataset import DatasetError, DatasetSpec

PEAK_PATTERN = r"^(?P<Chromosome>[^:_\-]+)[:_\-](?P<Start>\d+)[_\-](?P<End>\d+)$"


@dataclass
class Multiome:
    """Paired modalities; `rna.obs_names` equals `atac.obs_names`. A single-modality dataset has
    the other modality with no features (its cells, their obs, zero columns)."""

    rna: ad.AnnData
    atac: ad.AnnData

    @property
    def n_cells(self) -> int:
        return self.rna.n_obs

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(name for name, m in (("rna", self.rna), ("atac", self.atac)) if m.n_vars > 0)

    def __post_init__(self):
        if not self.rna.obs_names.equals(self.atac.obs_names):
            raise ValueError("rna and atac must hold the same cells in the same order")

    def to_mudata(self) -> mudata.MuData:
        """Modalities `rna` and `atac`, their obs and var also in the global ones ("rna:cell_type"), for muon users."""
        with mudata.set_options(pull_on_update=False):  # the explicit pulls, without mudata's FutureWarning
            mdata = mudata.MuData({"rna": self.rna, "atac": self.atac})
            mdata.pull_obs()
            mdata.pull_var()
        return mdata

    @classmethod
    def from_mudata(cls, mdata: mudata.MuData) -> "Multiome":
        return cls(mdata.mod["rna"], mdata.mod["atac"])


def read_dataset(spec: DatasetSpec) -> Multiome:
    """Read the files a dataset.yaml names, check them, and pair the cells."""
    if not spec.paired:
        (modality,) = spec.modalities
        rna, atac = _one_modality(_read_h5ad(spec.files[modality]), modality)
        sources = (spec.files[modality],) * 2
    elif spec.format == "h5ad_pair":
        rna, atac = _read_h5ad(spec.files["rna"]), _read_h5ad(spec.files["atac"])
        sources = (spec.files["rna"], spec.files["atac"])
    elif spec.format == "h5mu":
        rna, atac = read_h5mu_modalities(spec.files["h5mu"])
        sources = (spec.files["h5mu"],) * 2
    else:
        rna, atac = read_10x_h5(spec.files["h5"])
        sources = (spec.files["h5"],) * 2
    if spec.rna_counts_layer:
        if spec.rna_counts_layer not in rna.layers:
            raise DatasetError(
                f"{sources[0]}: rna_counts_layer {spec.rna_counts_layer!r} is not a layer "
                f"(layers: {list(rna.layers)})"
            )
        rna.layers["counts"] = rna.layers[spec.rna_counts_layer]
    for setting in ("cell_type_column", "batch_column"):
        column = getattr(spec, setting)
        if column and column not in rna.obs:
            raise DatasetError(f"{spec.yaml_path}: {setting} {column!r} is not a column of the cells in "
                               f"{sources[0]} (columns: {list(rna.obs.columns)})")
    return pair_modalities(rna, atac, *sources, modalities=spec.modalities)


def _one_modality(adata: ad.AnnData, modality: str) -> tuple[ad.AnnData, ad.AnnData]:
    """(rna, atac) with the missing one as the same cells and no features."""
    absent = ad.AnnData(sp.csr_matrix((adata.n_obs, 0), dtype=np.float32), obs=adata.obs.copy())
    return (adata, absent) if modality == "rna" else (absent, adata)


GENE_ID_COLUMNS = ("gene_ids", "gene_id")  # where 10x (and scanpy's read_10x_*) and others keep Ensembl ids


def gene_ids(var: pd.DataFrame) -> pd.Series | None:
    """The genes' Ensembl ids, where the file has them."""
    return next((var[c] for c in GENE_ID_COLUMNS if c in var), None)


def unique_gene_names(rna: ad.AnnData, source: Path) -> ad.AnnData:
    """Genes named by symbol, unique. A symbol shared by several Ensembl ids (Cell Ranger ARC's
    GRCh38-2020-A reference has ten: TBCE, MATR3, HSPA14, POLR2J3, ...) stays the name of the id
    with the most counts in this file (ties: the first in the file); the others are named
    `SYMBOL_ENSG...`. So priors and TF lists, which name symbols, match the copy that is expressed,
    and every gene keeps its id (var `gene_ids`) and symbol (var `symbol`). Refused: duplicate
    names without a gene id column, and duplicate ids."""
    names = rna.var_names
    if not names.has_duplicates:
        return rna
    duplicated = names[names.duplicated()].unique()
    ids = gene_ids(rna.var)
    if ids is None:
        raise DatasetError(f"{source}: {len(duplicated)} duplicate gene names, e.g. {list(duplicated[:3])}, and no "
                           f"gene id column ({' or '.join(GENE_ID_COLUMNS)}) to tell them apart")
    ids = ids.astype(str)
    if ids.duplicated().any():
        raise DatasetError(f"{source}: duplicate gene ids in var[{ids.name!r}], e.g. "
                           f"{list(ids[ids.duplicated()].unique()[:3])}")
    genes = pd.DataFrame({"name": names.to_numpy(), "id": ids.to_numpy(),
                          "total": np.asarray(rna.X.sum(axis=0)).ravel(), "position": np.arange(rna.n_vars)})
    shared = genes[genes.name.isin(duplicated)].sort_values(["name", "total", "position"], ascending=[True, False, True])
    renamed = shared.position[shared.name.duplicated()].to_numpy()  # all but the first of each symbol
    new_names = genes.name.to_numpy().copy()
    new_names[renamed] = genes.name.to_numpy()[renamed] + "_" + genes.id.to_numpy()[renamed]
    rna.var["symbol"] = names.to_numpy()
    rna.var_names = pd.Index(new_names.astype(str))
    rna.uns["renamed_duplicate_symbols"] = list(new_names[renamed].astype(str))
    return rna


def pair_modalities(rna: ad.AnnData, atac: ad.AnnData, rna_source: Path, atac_source: Path,
                    modalities: tuple[str, ...] = ("rna", "atac")) -> Multiome:
    """Check the dataset's modalities (the absent one of a single-modality dataset is featureless),
    keep the barcodes they share (in RNA order), parse peaks."""
    if "rna" in modalities:
        rna = unique_gene_names(rna, rna_source)
    rna, atac = (_clean(m, source, what) if name in modalities else m
                 for name, m, source, what in (("rna", rna, rna_source, "genes"), ("atac", atac, atac_source, "peaks")))
    if "rna" in modalities:
        _require_counts(rna, rna_source)
    shared = rna.obs_names.intersection(atac.obs_names, sort=False)
    if len(shared) == 0:
        raise DatasetError(
            f"{rna_source} and {atac_source} share no cell barcodes "
            f"(RNA e.g. {list(rna.obs_names[:2])}, ATAC e.g. {list(atac.obs_names[:2])})"
        )
    order = rna.obs_names[rna.obs_names.isin(shared)]
    rna, atac = rna[order].copy(), atac[order].copy()
    atac.var = pd.concat([atac.var, parse_peaks(atac.var_names, atac_source)], axis=1)
    rna.uns["n_barcodes_dropped"] = int(rna.n_obs - len(order))
    return Multiome(rna, atac)


def parse_peaks(names: pd.Index | list[str], source: Path | str = "peaks") -> pd.DataFrame:
    """`chr:start-end`, `chr-start-end` or `chr_start_end` → Chromosome/Start/End columns."""
    names = pd.Index(names)
    parts = names.to_series().str.extract(PEAK_PATTERN)
    bad = parts["Chromosome"].isna()
    if bad.any():
        raise DatasetError(
            f"{source}: {int(bad.sum())} of {len(names)} peak names are not chr:start-end, "
            f"chr-start-end or chr_start_end, e.g. {list(names[bad.to_numpy()][:3])}"
        )
    out = pd.DataFrame(
        {
            "Chromosome": parts["Chromosome"].to_numpy(),
            "Start": parts["Start"].astype(np.int64).to_numpy(),
            "End": parts["End"].astype(np.int64).to_numpy(),
        },
        index=names,
    )
    if (out["End"] <= out["Start"]).any():
        example = list(names[(out["End"] <= out["Start"]).to_numpy()][:3])
        raise DatasetError(f"{source}: peaks whose end is not after their start, e.g. {example}")
    return out


def read_h5mu_modalities(path: Path) -> tuple[ad.AnnData, ad.AnnData]:
    """The `rna` and `atac` modalities of a MuData file."""
    import mudata

    try:
        with mudata.set_options(pull_on_update=False):  # modalities only, no merged obs/var
            mdata = mudata.read_h5mu(path)
    except (OSError, KeyError, ValueError) as e:
        raise DatasetError(f"{path}: cannot be read as .h5mu ({e})") from None
    missing = {"rna", "atac"} - set(mdata.mod)
    if missing:
        raise DatasetError(f"{path}: needs modalities 'rna' and 'atac'; found {sorted(mdata.mod)}")
    return mdata.mod["rna"], mdata.mod["atac"]


def read_10x_h5(path: Path) -> tuple[ad.AnnData, ad.AnnData]:
    """A Cell Ranger ARC `filtered_feature_bc_matrix.h5` split into Gene Expression and Peaks."""
    try:
        with h5py.File(path, "r") as f:
            m = f["matrix"]
            n_features, n_cells = m["shape"][:]
            X = sp.csc_matrix(
                (m["data"][:], m["indices"][:], m["indptr"][:]), shape=(n_features, n_cells)
            ).T.tocsr()
            barcodes = _decode(m["barcodes"][:])
            feats = m["features"]
            kind = _decode(feats["feature_type"][:])
            ids, names = _decode(feats["id"][:]), _decode(feats["name"][:])
    except (OSError, KeyError) as e:
        raise DatasetError(f"{path}: not a readable 10x feature-barcode .h5 ({e})") from None
    obs = pd.DataFrame(index=pd.Index(barcodes, name=None))
    is_gene, is_peak = kind == "Gene Expression", kind == "Peaks"
    if not is_gene.any() or not is_peak.any():
        raise DatasetError(f"{path}: needs 'Gene Expression' and 'Peaks' features; found {sorted(set(kind))}")
    rna = ad.AnnData(
        X[:, is_gene].astype(np.float32),
        obs=obs.copy(),
        var=pd.DataFrame({"gene_ids": ids[is_gene]}, index=pd.Index(names[is_gene])),
    )
    atac = ad.AnnData(X[:, is_peak].astype(np.float32), obs=obs.copy(), var=pd.DataFrame(index=pd.Index(ids[is_peak])))
    return rna, atac


def _read_h5ad(path: Path) -> ad.AnnData:
    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise DatasetError(f"{path}: cannot be read as .h5ad, the file may be truncated or corrupt ({e})") from None


def _clean(adata: ad.AnnData, source: Path, what: str) -> ad.AnnData:
    """Sparse CSR float32 X (and counts layer), unique names, no NaN or negative values."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise DatasetError(f"{source}: empty matrix ({adata.n_obs} cells × {adata.n_vars} {what})")
    dup = adata.var_names[adata.var_names.duplicated()]
    if len(dup):
        raise DatasetError(f"{source}: {len(dup)} duplicate {what[:-1]} names, e.g. {list(dup.unique()[:3])}")
    if adata.obs_names.has_duplicates:
        raise DatasetError(f"{source}: duplicate cell barcodes, e.g. {list(adata.obs_names[adata.obs_names.duplicated()][:3])}")
    adata.X = _checked_csr(adata.X, source, "X")
    for name in list(adata.layers):
        adata.layers[name] = _checked_csr(adata.layers[name], source, f"layers[{name!r}]")
    return adata


def _require_counts(rna: ad.AnnData, source: Path) -> None:
    """An all-zero RNA matrix would otherwise fail later checks for the wrong reason."""
    matrices = {"X": rna.X} | {f"layers[{name!r}]": m for name, m in rna.layers.items()}
    if all(m.nnz == 0 for m in matrices.values()):
        raise DatasetError(f"{source}: no cell has any RNA count ({' and '.join(matrices)} all zero, "
                           f"{rna.n_obs} cells × {rna.n_vars} genes)")


def _checked_csr(X, source: Path, where: str) -> sp.csr_matrix:
    X = sp.csr_matrix(X, dtype=np.float32)
    if not np.isfinite(X.data).all():
        raise DatasetError(f"{source}: {where} holds {int((~np.isfinite(X.data)).sum())} NaN or infinite values")
    if (X.data < 0).any():
        raise DatasetError(f"{source}: {where} holds {int((X.data < 0).sum())} negative values")
    X.eliminate_zeros()
    return X


def _decode(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return (np.char.decode(a, "utf-8") if a.dtype.kind == "S" else a.astype(str)).astype(object)
