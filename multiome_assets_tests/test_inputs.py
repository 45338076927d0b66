"""Input versions: the content of a dataset's files and settings, split so an edit touches only its input."""
import os
import shutil

import yaml

from multiome_assets.dataset import load_spec
from multiome_assets.inputs import input_versions
from multiome_assets.warehouse import warehouse_dir


def _versions(key):
    return {name: v.version for name, v in input_versions(load_spec(key), warehouse_dir()).items()}


def _edit_yaml(folder, **settings):
    path = folder / "dataset.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **settings}))


def test_an_edit_changes_only_the_inputs_it_is_part_of(data_root):
    folder = data_root / "datasets" / "bmmc_starter"
    shutil.copy(data_root / "reference" / "dorothea_human_ABC.csv", folder / "prior.csv")
    _edit_yaml(folder, prior="prior.csv")
    first = _versions("bmmc_starter")
    assert len(set(first.values())) == len(first)  # eight distinct inputs

    os.utime(folder / "rna.h5ad", ns=(1, 1))  # touched, same bytes
    assert _versions("bmmc_starter") == first

    with open(folder / "prior.csv", "a") as f:
        f.write("MYC,A,CDK4,1.0\n")
    after_prior = _versions("bmmc_starter")
    assert {n for n in first if first[n] != after_prior[n]} == {"prior"}

    _edit_yaml(folder, candidate_window=5000, cell_type_column=None)
    after_yaml = _versions("bmmc_starter")
    assert {n for n in first if after_prior[n] != after_yaml[n]} == {"candidate_window", "cell_type_column"}

    _edit_yaml(folder, qc={"min_cells_per_gene": 4})  # a reading setting is part of the cells
    assert {n for n in first if after_yaml[n] != _versions("bmmc_starter")[n]} == {"cells"}


def test_a_variant_folder_naming_the_same_files_has_the_same_cells(data_root):
    variant = data_root / "datasets" / "bmmc_starter_collectri"
    variant.mkdir()
    spec = yaml.safe_load((data_root / "datasets/bmmc_starter/dataset.yaml").read_text())
    spec.update(files={"rna": "../bmmc_starter/rna.h5ad", "atac": "../bmmc_starter/atac.h5ad"}, prior="collectri")
    (variant / "dataset.yaml").write_text(yaml.safe_dump(spec))
    base, other = _versions("bmmc_starter"), _versions("bmmc_starter_collectri")
    assert {n for n in base if base[n] != other[n]} == {"prior"}  # versions are content, not paths
