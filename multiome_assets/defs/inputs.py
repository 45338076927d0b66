"""The files and settings each dataset's assets read, as observable source assets whose data
version is their content: edit a prior and Dagster marks `prior_edges` and what follows stale
(what reads an input directly returns `versioned(...)`: see there).

Versions are recorded by `dataset_folder_sensor` (every 30 s under `make ui`) and by
`multiome-assets build`/`register` before they run; `dataset_inputs` observes them in a run."""
import warnings
from pathlib import Path

import dagster as dg

from multiome_assets.dataset import DatasetSpec
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.partitions import dataset_partitions
from multiome_assets.defs.resources import DatasetCatalog
from multiome_assets.inputs import input_versions
from multiome_assets.warehouse import content_hash

DESCRIPTIONS = {
    "cells": "The dataset's cell files (RNA, ATAC) and the dataset.yaml settings for reading and QC",
    "annotation": "The gene annotation dataset.yaml names (TSS, strand, Ensembl ids)",
    "prior": "The prior TF → target network dataset.yaml names",
    "tf_list": "The list of transcription factors dataset.yaml names (the regulators)",
    "candidate_window": "dataset.yaml's candidate_window: bp either side of each TSS",
    "cell_type_column": "dataset.yaml's cell_type_column: which labels give the per-cell-type GRNs",
    "ccre_vocabulary": "Cisformer's fixed cCRE vocabulary (data/reference)",
    "gene_vocabulary": "Cisformer's fixed gene vocabulary (data/reference)",
    "translator_from": "dataset.yaml's translator_from: the paired dataset whose trained translators translate "
                       "this one, and those translators",
    "link_window": "dataset.yaml's link_window: bp either side of each TSS for CRE-gene links",
    "enrichment_files": "The BED sets, fine-mapped variants and genome FASTA dataset.yaml names for enrichment, "
                        "and the bundled JASPAR motifs",
}
INPUTS = {name: dg.AssetKey(["input", name]) for name in DESCRIPTIONS}
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster keeps an observation's data version


def versioned(value) -> dg.Output:
    """`value` as the output of an asset that reads an input, with its content's hash as its data
    version. Dagster 1.13 does not carry a partitioned observable source's version into what reads
    it (it hashes the source's materializations, of which there are none), so without this an edited
    prior marks `prior_edges` stale but nothing below it: the heads, scores and metrics would show
    fresh in the UI until rerun. Content, not inputs: output that did not change leaves what
    follows fresh."""
    with warnings.catch_warnings():  # `data_version` is beta in Dagster 1.13
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(value, data_version=dg.DataVersion(content_hash(value)))


def _observe(context, datasets: DatasetCatalog, warehouse: dg.ResourceParam[WarehouseIOManager]):
    """Hashes each input of the dataset."""
    for name, current in input_versions(datasets.spec(context.partition_key), warehouse.directory()).items():
        yield dg.ObserveResult(asset_key=INPUTS[name], data_version=dg.DataVersion(current.version),
                               metadata={"content": dg.MetadataValue.json(current.describe())})


with warnings.catch_warnings():  # beta in Dagster 1.13, and the one way to observe several inputs in one step
    warnings.simplefilter("ignore", dg.BetaWarning)
    dataset_inputs = dg.multi_observable_source_asset(
        name="dataset_inputs", partitions_def=dataset_partitions, group_name="inputs",
        specs=[dg.AssetSpec(key, description=DESCRIPTIONS[name]) for name, key in INPUTS.items()],
    )(_observe)


def changed_inputs(instance: dg.DagsterInstance, key: str, spec: DatasetSpec,
                   warehouse_root: Path) -> list[dg.AssetObservation]:
    """An observation of each input of dataset `key` whose version differs from the last one recorded."""
    events = []
    for name, current in input_versions(spec, warehouse_root).items():
        record = instance.get_latest_data_version_record(INPUTS[name], is_source=True, partition_key=key)
        last = record.event_log_entry.asset_observation.tags.get(DATA_VERSION_TAG) if record else None
        if last != current.version:
            events.append(dg.AssetObservation(
                asset_key=INPUTS[name], partition=key, tags={DATA_VERSION_TAG: current.version},
                metadata={"content": dg.MetadataValue.json(current.describe())}))
    return events
