"""Shared fixtures: a temp data dir that holds the bundled datasets and reference files, a temp
warehouse, and small real fixtures built from the bundled BMMC data in every supported format."""
from __future__ import annotations

import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from multiome_assets.dataset import PROJECT_ROOT

BUNDLED = PROJECT_ROOT / "data"


def two_priors_data_dir(data: Path, copy_starter: bool = True) -> None:
    """A data dir for the priors-update scenario: reference/ with the priors copied (tests replace
    them) and the rest linked; `bmmc_starter` (naming DoRothEA) copied or linked; `bmmc_collectri`,
    the same cells with `prior: collectri`."""
    import yaml

    (data / "reference").mkdir(parents=True)
    for path in (BUNDLED / "reference").iterdir():
        if path.name.endswith(".csv"):
            shutil.copy(path, data / "reference" / path.name)
        else:
            (data / "reference" / path.name).symlink_to(path)
    (data / "datasets").mkdir()
    starter = BUNDLED / "datasets" / "bmmc_starter"
    if copy_starter:
        shutil.copytree(starter, data / "datasets" / "bmmc_starter")
    else:
        (data / "datasets" / "bmmc_starter").symlink_to(starter)
    variant = yaml.safe_load((starter / "dataset.yaml").read_text())
    variant |= {"prior": "collectri", "files": {"rna": "../bmmc_starter/rna.h5ad", "atac": "../bmmc_starter/atac.h5ad"}}
    (data / "datasets" / "bmmc_collectri").mkdir()
    (data / "datasets" / "bmmc_collectri" / "dataset.yaml").write_text(yaml.safe_dump(variant))


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """A fresh data dir: reference/ linked to the bundled one, datasets/ copied; warehouse in tmp."""
    root = tmp_path / "data"
    (root / "datasets").mkdir(parents=True)
    (root / "reference").symlink_to(BUNDLED / "reference")
    for key in ("bmmc_starter",):
        shutil.copytree(BUNDLED / "datasets" / key, root / "datasets" / key)
    monkeypatch.setenv("MULTIOME_DATA_DIR", str(root))
    monkeypatch.setenv("MULTIOME_WAREHOUSE", str(tmp_path / "warehouse"))
    return root


@pytest.fixture(scope="session")
def bmmc() -> tuple[ad.AnnData, ad.AnnData]:
    """The bundled BMMC starter (500 cells, 600 genes, 600 peaks) as raw AnnData."""
    rna = ad.read_h5ad(BUNDLED / "datasets/bmmc_starter/rna.h5ad")
    atac = ad.read_h5ad(BUNDLED / "datasets/bmmc_starter/atac.h5ad")
    return rna, atac


def write_dataset(root: Path, key: str, rna: ad.AnnData, atac: ad.AnnData, **settings) -> Path:
    """A dataset folder with rna.h5ad, atac.h5ad and a dataset.yaml (relaxed QC unless overridden)."""
    import yaml

    folder = root / "datasets" / key
    folder.mkdir(parents=True, exist_ok=True)
    rna.write_h5ad(folder / "rna.h5ad")
    atac.write_h5ad(folder / "atac.h5ad")
    spec = {
        "format": "h5ad_pair",
        "files": {"rna": "rna.h5ad", "atac": "atac.h5ad"},
        "qc": {"min_cells_per_gene": 1, "min_cells_per_peak": 1, "min_genes_per_cell": 1, "min_peaks_per_cell": 1},
        **settings,
    }
    (folder / "dataset.yaml").write_text(yaml.safe_dump(spec))
    return folder


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """Tiny models: on a shared 2-core machine a second intra-op thread only spins."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
