"""Cisformer translation assets: splits, the two translators, translated profiles and the evaluation
against simple translators. Bodies are calls into `multiome_assets.translation`."""
import dagster as dg
import mudata
import pandas as pd
import scipy.sparse as sp

from multiome_assets.defs.inputs import INPUTS
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.partitions import dataset_partitions
from multiome_assets.defs.resources import ComputeDevice, DatasetCatalog
from multiome_assets.readers import Multiome
from multiome_assets.translation import pipeline
from multiome_assets.translation.pipeline import Translators

ARGS = dict(partitions_def=dataset_partitions, io_manager_key="warehouse", group_name="translation")


class TranslatorTraining(dg.Config):
    profile: str = "cpu"  # cpu: small, the bundled datasets in minutes on 2 cores; paper: the paper's sizes, for a GPU
    seed: int = 0
    max_epochs: int | None = None  # None: the profile's


@dg.asset(**ARGS, deps=[INPUTS["cell_type_column"]], code_version="1", kinds={"parquet"})
def translation_splits(context: dg.AssetExecutionContext, datasets: DatasetCatalog, multiome: Multiome) -> pd.DataFrame:
    """Per scenario (random; held-out donor; held-out cell types), which cells train, validate, test."""
    spec = datasets.spec(context.partition_key)
    table = pipeline.splits(multiome, spec.batch_column, spec.cell_type_column)
    context.add_output_metadata({"scenarios": ", ".join(table.scenario.unique())})
    return table


def _train(context, direction: str, config: TranslatorTraining, compute: ComputeDevice, warehouse: WarehouseIOManager,
           multiome, gene_vocab_map, peak_vocab_matrix, splits) -> Translators:
    cells, counts_from = pipeline.load_cells(multiome, gene_vocab_map, peak_vocab_matrix, source=context.partition_key)
    resume = warehouse.artifact_path("translator_checkpoints", context.partition_key, "")
    translators = pipeline.train(direction, cells, multiome.rna.obs_names, splits, profile=config.profile,
                                 device=compute.torch_device(), seed=config.seed, max_epochs=config.max_epochs,
                                 checkpoint_dir=resume,
                                 log=lambda row: context.log.info(f"{direction} epoch {row}"))
    context.add_output_metadata({
        "rna_counts": counts_from, "profile": config.profile,
        **{f"training_{s}": dg.MetadataValue.md(h.to_markdown(index=False, floatfmt=".4f"))
           for s, h in translators.histories.items()},
    })
    return translators


@dg.asset(**ARGS, pool="gpu", code_version="1", kinds={"pytorch"})
def translator_rna2atac(context: dg.AssetExecutionContext, config: TranslatorTraining, compute: ComputeDevice,
                        warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                        gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                        translation_splits: pd.DataFrame) -> Translators:
    """RNA→ATAC translators (one per scenario): cCRE queries cross-attending to expressed genes."""
    return _train(context, "rna2atac", config, compute, warehouse, multiome, gene_vocab_map, peak_vocab_matrix,
                  translation_splits)


@dg.asset(**ARGS, pool="gpu", code_version="1", kinds={"pytorch"})
def translator_atac2rna(context: dg.AssetExecutionContext, config: TranslatorTraining, compute: ComputeDevice,
                        warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                        gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                        translation_splits: pd.DataFrame) -> Translators:
    """ATAC→RNA translators (one per scenario): gene queries cross-attending to accessible cCREs."""
    return _train(context, "atac2rna", config, compute, warehouse, multiome, gene_vocab_map, peak_vocab_matrix,
                  translation_splits)


def _translated(context, compute, multiome, gene_vocab_map, peak_vocab_matrix, splits, translators) -> mudata.MuData:
    cells, _ = pipeline.load_cells(multiome, gene_vocab_map, peak_vocab_matrix, source=context.partition_key)
    profiles = pipeline.translated(translators, cells, multiome.rna.obs_names, splits, compute.torch_device())
    context.add_output_metadata({s: f"{a.n_obs} cells x {a.n_vars} features" for s, a in profiles.mod.items()})
    return profiles


@dg.asset(**ARGS, pool="gpu", code_version="1", kinds={"anndata"})
def translated_atac(context: dg.AssetExecutionContext, compute: ComputeDevice, multiome: Multiome,
                    gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix, translation_splits: pd.DataFrame,
                    translator_rna2atac: Translators) -> mudata.MuData:
    """Held-out cells' accessibility translated from their RNA: probabilities and calibrated calls
    over the covered cCREs, one modality per scenario."""
    return _translated(context, compute, multiome, gene_vocab_map, peak_vocab_matrix, translation_splits,
                       translator_rna2atac)


@dg.asset(**ARGS, pool="gpu", code_version="1", kinds={"anndata"})
def translated_rna(context: dg.AssetExecutionContext, compute: ComputeDevice, multiome: Multiome,
                   gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix, translation_splits: pd.DataFrame,
                   translator_atac2rna: Translators) -> mudata.MuData:
    """Held-out cells' expression translated from their ATAC: expected log1p expression over the
    dataset's vocabulary genes, one modality per scenario."""
    return _translated(context, compute, multiome, gene_vocab_map, peak_vocab_matrix, translation_splits,
                       translator_atac2rna)


@dg.asset(**ARGS, deps=[INPUTS["cell_type_column"]], code_version="1", kinds={"parquet"})
def translation_metrics(context: dg.AssetExecutionContext, datasets: DatasetCatalog, multiome: Multiome,
                        gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                        translation_splits: pd.DataFrame, translator_rna2atac: Translators,
                        translated_atac: mudata.MuData, translated_rna: mudata.MuData) -> pd.DataFrame:
    """The transformer beside the global mean, kNN, ridge and cell-type-mean translators on the same
    held-out cells, per direction and scenario."""
    spec = datasets.spec(context.partition_key)
    cells, counts_from = pipeline.load_cells(multiome, gene_vocab_map, peak_vocab_matrix, source=context.partition_key)
    labels = pipeline.cell_labels(multiome, spec.cell_type_column)
    tables = [pipeline.evaluate(direction, profiles, cells, multiome.rna.obs_names, translation_splits, labels,
                                translator_rna2atac.thresholds).assign(config=pipeline.config_json(profiles.uns["profile"], counts_from))
              for direction, profiles in (("rna2atac", translated_atac), ("atac2rna", translated_rna))]
    table = pd.concat(tables, ignore_index=True)
    context.add_output_metadata({"summary": dg.MetadataValue.md(
        table.pivot_table(index=["direction", "scenario", "method"], columns="metric", values="value")
        .reset_index().to_markdown(index=False, floatfmt=".3f"))})
    return table
