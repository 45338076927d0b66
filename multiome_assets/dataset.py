"""The dataset folder contract: `data/datasets/<key>/dataset.yaml` plus the files it names."""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
KEY_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")

# Short names usable in dataset.yaml for the bundled reference files in data/reference/.
REFERENCE_FILES = {
    "dorothea": "dorothea_human_ABC.csv",
    "collectri": "collectri_human.csv",
    "hg38_ensembl93": "hg38_genes_ensembl93.tsv.gz",
    "lambert2018": "human_tfs_lambert2018.txt",
    "ccre_hg38": "human_cCREs_hg38.bed.gz",
    "gene_vocab_38244": "human_gene_vocab_38244.tsv.gz",
    "jaspar2024": "JASPAR2024_CORE_vertebrates_non-redundant.meme",
}


class DatasetError(ValueError):
    """Bad dataset input; the message names the file and the problem."""


def data_dir() -> Path:
    """The default data folder: $MULTIOME_DATA_DIR, else the project's data/. Read here only: the
    Dagster resources default to it, and everything below them is handed its folder."""
    return Path(os.environ.get("MULTIOME_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def validate_key(key: str) -> str:
    """A partition key is a folder name under data/datasets: lowercase letters, digits, `_`."""
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise DatasetError(
            f"invalid dataset key {key!r}: use 1-64 lowercase letters, digits or '_' "
            "(it names a folder under data/datasets/)"
        )
    return key


@dataclass(frozen=True)
class QCConfig:
    """Cisformer-style QC thresholds; a dataset.yaml `qc:` block overrides any of them."""

    min_cells_per_gene: int = 10
    min_cells_per_peak: int = 10
    min_genes_per_cell: int = 200
    max_genes_per_cell: int = 20_000
    min_peaks_per_cell: int = 500
    max_peaks_per_cell: int = 50_000


@dataclass(frozen=True)
class DatasetSpec:
    key: str
    folder: Path
    format: Literal["h5ad_pair", "h5mu", "10x_h5", "h5ad_rna", "h5ad_atac"]
    files: dict[str, Path]
    genome: str = "hg38"
    annotation: Path = field(default=Path())
    prior: Path = field(default=Path())
    tf_list: Path = field(default=Path())
    rna_values: Literal["auto", "raw_counts", "normalized"] = "auto"
    rna_counts_layer: str | None = None
    cell_type_column: str | None = None
    batch_column: str | None = None
    candidate_window: int = 100_000
    title: str = ""
    qc: QCConfig = QCConfig()
    translator_from: str | None = None  # a paired dataset whose translators translate this one
    link_window: int = 250_000  # bp either side of a TSS for CRE-gene links
    genome_fasta: Path | None = None  # for motif enrichment of cell-type-specific cCREs
    enrichment_beds: dict[str, Path] = field(default_factory=dict)  # name -> BED of regions (ChIP-seq peaks)
    fine_mapped_variants: Path | None = None  # chrom, pos, pip (tab-separated)
    data_dir: Path | None = None  # the data folder the spec was read from: its reference/ files serve this dataset

    def reference(self, name: str) -> Path:
        """A bundled reference file (REFERENCE_FILES) of the data folder this dataset lives in."""
        return reference_path(name, self.data_dir)

    @property
    def yaml_path(self) -> Path:
        return self.folder / "dataset.yaml"

    @property
    def modalities(self) -> tuple[str, ...]:
        """("rna", "atac") for a paired dataset, ("rna",) or ("atac",) for a single-modality one."""
        return SINGLE_MODALITY.get(self.format, ("rna", "atac"))

    @property
    def paired(self) -> bool:
        return len(self.modalities) == 2

    def file_of(self, modality: str) -> Path:
        """The file that holds `modality` ("rna" or "atac"), for messages about its content."""
        return self.files.get(modality) or self.files.get("h5mu") or self.files.get("h5") or self.yaml_path


FORMAT_FILES = {"h5ad_pair": ("rna", "atac"), "h5mu": ("h5mu",), "10x_h5": ("h5",), "h5ad_rna": ("rna",),
                "h5ad_atac": ("atac",)}
SINGLE_MODALITY = {"h5ad_rna": ("rna",), "h5ad_atac": ("atac",)}
SETTINGS = {"title", "genome", "format", "files", "rna_values", "rna_counts_layer", "annotation", "prior", "tf_list",
            "cell_type_column", "batch_column", "candidate_window", "qc", "translator_from", "link_window",
            "genome_fasta", "enrichment_beds", "fine_mapped_variants"}


def load_spec(key: str, root: Path | None = None) -> DatasetSpec:
    """Read and check `data/datasets/<key>/dataset.yaml`."""
    validate_key(key)
    root = root or data_dir()
    folder = root / "datasets" / key
    path = folder / "dataset.yaml"
    if not path.is_file():
        raise DatasetError(f"{path}: no dataset.yaml for dataset {key!r}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise DatasetError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a mapping of settings")

    unknown = set(raw) - SETTINGS
    if unknown:
        raise DatasetError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(SETTINGS)}")
    genome = raw.get("genome", "hg38")
    if genome != "hg38":
        raise DatasetError(f"{path}: genome {genome!r} is not supported: the bundled annotation, cCRE "
                           "vocabulary, priors and TF list are human hg38")
    for name in ("title", "rna_counts_layer", "cell_type_column", "batch_column", "translator_from"):
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise DatasetError(f"{path}: {name} must be a text, not {raw[name]!r}")
    fmt = raw.get("format", "h5ad_pair")
    if fmt not in FORMAT_FILES:
        raise DatasetError(f"{path}: format {fmt!r} is not one of {sorted(FORMAT_FILES)}")
    files = raw.get("files") or {}
    missing_roles = [r for r in FORMAT_FILES[fmt] if r not in files]
    if missing_roles:
        raise DatasetError(f"{path}: format {fmt} needs files: {', '.join(missing_roles)}")
    resolved = {role: _resolve_file(path, folder, root, name) for role, name in files.items()}
    translator_from = raw.get("translator_from")
    if translator_from is not None:
        if not KEY_PATTERN.match(translator_from) or not (root / "datasets" / translator_from / "dataset.yaml").is_file():
            raise DatasetError(f"{path}: translator_from {translator_from!r} is no dataset folder with a "
                               f"dataset.yaml (dataset folders: {', '.join(dataset_folders(root))})")
        if translator_from == key:
            raise DatasetError(f"{path}: translator_from names this dataset itself; name the paired dataset "
                               "whose translators should translate it")
    elif fmt in SINGLE_MODALITY:
        paired = [k for k in list_dataset_keys(root) if k != key]
        raise DatasetError(f"{path}: a dataset with only {SINGLE_MODALITY[fmt][0].upper()} (format {fmt}) is "
                           "translated by the translators of a paired dataset: add `translator_from: <key>` naming "
                           f"one (dataset folders: {', '.join(paired) or 'none'})")

    qc_raw = raw.get("qc") or {}
    known = {f.name for f in fields(QCConfig)}
    unknown = set(qc_raw) - known
    if unknown:
        raise DatasetError(f"{path}: unknown qc settings {sorted(unknown)}; known: {sorted(known)}")
    rna_values = raw.get("rna_values", "auto")
    if rna_values not in ("auto", "raw_counts", "normalized"):
        raise DatasetError(f"{path}: rna_values must be auto, raw_counts or normalized, not {rna_values!r}")

    return DatasetSpec(
        key=key,
        folder=folder,
        format=fmt,
        files=resolved,
        genome=genome,
        annotation=_resolve_file(path, folder, root, raw.get("annotation", "hg38_ensembl93")),
        prior=_resolve_file(path, folder, root, raw.get("prior", "dorothea")),
        tf_list=_resolve_file(path, folder, root, raw.get("tf_list", "lambert2018")),
        rna_values=rna_values,
        rna_counts_layer=raw.get("rna_counts_layer"),
        cell_type_column=raw.get("cell_type_column"),
        batch_column=raw.get("batch_column"),
        candidate_window=_count(path, "candidate_window", raw.get("candidate_window", 100_000)),
        title=raw.get("title", key),
        qc=QCConfig(**{name: _count(path, f"qc.{name}", value) for name, value in qc_raw.items()}),
        translator_from=translator_from,
        link_window=_count(path, "link_window", raw.get("link_window", 250_000)),
        genome_fasta=_optional_file(path, folder, root, raw.get("genome_fasta")),
        enrichment_beds=_file_mapping(path, folder, root, "enrichment_beds", raw.get("enrichment_beds")),
        fine_mapped_variants=_optional_file(path, folder, root, raw.get("fine_mapped_variants")),
        data_dir=root,
    )


def _optional_file(yaml_path: Path, folder: Path, root: Path, name) -> Path | None:
    return None if name is None else _resolve_file(yaml_path, folder, root, str(name))


def _file_mapping(yaml_path: Path, folder: Path, root: Path, setting: str, raw) -> dict[str, Path]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DatasetError(f"{yaml_path}: {setting} must map names to files, e.g. {{ctcf_chip: ctcf.bed}}")
    return {str(name): _resolve_file(yaml_path, folder, root, str(file)) for name, file in raw.items()}


def _count(path: Path, name: str, value) -> int:
    """A whole number >= 0; YAML reads `1e5` as text, so numeric text is accepted."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    except ValueError:
        number = math.nan
    if not (number >= 0 and number == int(number)):
        raise DatasetError(f"{path}: {name} must be a whole number >= 0, not {value!r}")
    return int(number)


def dataset_folders(root: Path | None = None) -> list[str]:
    """Names of the folders under data/datasets/ that hold a dataset.yaml, valid keys or not."""
    base = (root or data_dir()) / "datasets"
    return sorted(p.name for p in base.iterdir() if (p / "dataset.yaml").is_file()) if base.is_dir() else []


def list_dataset_keys(root: Path | None = None) -> list[str]:
    """Folders under data/datasets/ that hold a dataset.yaml and have a valid key."""
    return [name for name in dataset_folders(root) if KEY_PATTERN.match(name)]


def reference_path(name: str, root: Path | None = None) -> Path:
    return (root or data_dir()) / "reference" / REFERENCE_FILES[name]


def _resolve_file(yaml_path: Path, folder: Path, root: Path, name: str) -> Path:
    if name in REFERENCE_FILES:
        candidate = reference_path(name, root)
    else:
        # normpath, not resolve: a symlinked dataset folder is fine, `../../etc` in the YAML is not
        candidate = Path(os.path.normpath(folder / name))
        if not candidate.is_relative_to(root):
            raise DatasetError(f"{yaml_path}: file {name!r} points outside {root}")
    if not candidate.is_file():
        raise DatasetError(f"{yaml_path}: file {name!r} does not exist ({candidate})")
    return candidate
