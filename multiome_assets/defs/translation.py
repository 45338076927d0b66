"""Cisformer translation assets: splits, the two translators, translated profiles and the evaluation
against simple translators. Bodies are calls into `multiome_assets.translation`."""
import dagster as dg
import mudata
import pandas as pd
import scipy.sparse as sp

from multiome_assets import quality
from multiome_assets.cells import cell_labels
from multiome_assets.defs.inputs import INPUTS, versioned
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.metadata import check_result, check_spec, curve_table, png_markdown
from multiome_assets.figures import method_bars
from multiome_assets.defs.partitions import dataset_partitions, needs
from multiome_assets.defs.resources import ComputeDevice, DatasetCatalog
from multiome_assets.models.profiles import Profile
from multiome_assets.readers import Multiome
from multiome_assets.translation import cross, pipeline
from multiome_assets.translation.pipeline import Translators

ARGS = dict(partitions_def=dataset_partitions, io_manager_key="warehouse", group_name="translation")


class TranslatorTraining(dg.Config):
    profile: Profile = "cpu"  # cpu: small, the bundled datasets in minutes on 2 cores; paper: the paper's sizes, for a GPU
    seed: int = 0
    max_epochs: int | None = None  # None: the profile's


@dg.asset(**ARGS, deps=[INPUTS["cell_type_column"]], code_version="1", kinds={"parquet"})
def translation_splits(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
                       multiome: Multiome) -> dg.Output[pd.DataFrame]:
    """Per scenario (random; held-out donor; held-out cell types), which cells train, validate, test."""
    spec = datasets.spec(context.partition_key)
    table = pipeline.splits(multiome, spec.batch_column, spec.cell_type_column)
    context.add_output_metadata({"scenarios": ", ".join(table.scenario.unique())})
    return versioned(table)


def _train(context, direction: str, config: TranslatorTraining, compute: ComputeDevice, warehouse: WarehouseIOManager,
           datasets: DatasetCatalog, multiome, gene_vocab_map, peak_vocab_matrix, splits) -> Translators:
    cells, counts_from = pipeline.load_cells(multiome, gene_vocab_map, peak_vocab_matrix, datasets.spec(context.partition_key))
    resume = warehouse.artifact_path("translator_checkpoints", context.partition_key, "")
    translators = pipeline.train(direction, cells, multiome.rna.obs_names, splits, profile=config.profile,
                                 device=compute.torch_device(), seed=config.seed, max_epochs=config.max_epochs,
                                 checkpoint_dir=resume, log=context.log.info, processes=compute.processes,
                                 vocabularies=pipeline.vocabularies(datasets.spec(context.partition_key)))
    context.add_output_metadata({
        "rna_counts": counts_from, "profile": config.profile,
        **{f"training_{s}": curve_table(h) for s, h in translators.histories.items()},
        **{f"best_val_loss_{s}": float(h.val_loss.min()) for s, h in translators.histories.items()},
    })
    return translators


@dg.asset(**ARGS, pool="gpu", code_version="3", kinds={"pytorch"})
def translator_rna2atac(context: dg.AssetExecutionContext, config: TranslatorTraining, compute: ComputeDevice,
                        warehouse: dg.ResourceParam[WarehouseIOManager], datasets: DatasetCatalog, multiome: Multiome,
                        gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                        translation_splits: pd.DataFrame) -> Translators:
    """RNA→ATAC translators (one per scenario): cCRE queries cross-attending to expressed genes."""
    return _train(context, "rna2atac", config, compute, warehouse, datasets, multiome, gene_vocab_map, peak_vocab_matrix,
                  translation_splits)


@dg.asset(**ARGS, pool="gpu", code_version="3", kinds={"pytorch"})
def translator_atac2rna(context: dg.AssetExecutionContext, config: TranslatorTraining, compute: ComputeDevice,
                        warehouse: dg.ResourceParam[WarehouseIOManager], datasets: DatasetCatalog, multiome: Multiome,
                        gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                        translation_splits: pd.DataFrame) -> Translators:
    """ATAC→RNA translators (one per scenario): gene queries cross-attending to accessible cCREs."""
    return _train(context, "atac2rna", config, compute, warehouse, datasets, multiome, gene_vocab_map, peak_vocab_matrix,
                  translation_splits)


def _translated(context, compute, datasets, multiome, gene_vocab_map, peak_vocab_matrix, splits,
                translators) -> mudata.MuData:
    spec = datasets.spec(context.partition_key)
    cells, _ = pipeline.load_cells(multiome, gene_vocab_map, peak_vocab_matrix, spec)
    profiles = pipeline.translated(translators, cells, multiome.rna.obs_names, splits, compute.torch_device(), spec,
                                   gene_vocab_map, cell_labels(multiome.rna.obs, spec.cell_type_column), log=context.log.info)
    context.add_output_metadata({s: f"{a.n_obs} cells x {a.n_vars} features" for s, a in profiles.mod.items()})
    return profiles


@dg.asset(**ARGS, pool="gpu", code_version="3", kinds={"anndata"})
def translated_atac(context: dg.AssetExecutionContext, compute: ComputeDevice, datasets: DatasetCatalog, multiome: Multiome,
                    gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix, translation_splits: pd.DataFrame,
                    translator_rna2atac: Translators) -> mudata.MuData:
    """Held-out cells' accessibility translated from their RNA: scores and calibrated calls over the
    covered cCREs (`chr:start-end`); modality `atac` (random split), `atac_<scenario>` for the others."""
    return _translated(context, compute, datasets, multiome, gene_vocab_map, peak_vocab_matrix, translation_splits,
                       translator_rna2atac)


@dg.asset(**ARGS, pool="gpu", code_version="3", kinds={"anndata"})
def translated_rna(context: dg.AssetExecutionContext, compute: ComputeDevice, datasets: DatasetCatalog, multiome: Multiome,
                   gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix, translation_splits: pd.DataFrame,
                   translator_atac2rna: Translators) -> mudata.MuData:
    """Held-out cells' expression translated from their ATAC: expected log1p(CP10k) expression over
    the dataset's vocabulary genes, by its symbols; modality `rna` (random split), `rna_<scenario>`."""
    return _translated(context, compute, datasets, multiome, gene_vocab_map, peak_vocab_matrix, translation_splits,
                       translator_atac2rna)


@dg.asset(**ARGS, deps=[INPUTS["cell_type_column"]], code_version="2", kinds={"parquet"},
          check_specs=[check_spec("translation_metrics", "transformer_beats_best_baseline",
                                  "random split: RNA→ATAC per_cre_auroc_macro and ATAC→RNA gene_pearson of the "
                                  "transformer against the best of global mean, kNN and ridge; a warning unless "
                                  "it beats them in both")])
def translation_metrics(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
                        warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                        gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                        translation_splits: pd.DataFrame, translator_rna2atac: Translators,
                        translated_atac: mudata.MuData, translated_rna: mudata.MuData):
    """The transformer beside the global mean, kNN, ridge and cell-type-mean translators on the same
    held-out cells, per direction and scenario; a UMAP of measured and translated test cells."""
    spec = datasets.spec(context.partition_key)
    cells, counts_from = pipeline.load_cells(multiome, gene_vocab_map, peak_vocab_matrix, spec)
    labels = cell_labels(multiome.rna.obs, spec.cell_type_column)
    profiles = {"rna2atac": translated_atac, "atac2rna": translated_rna}
    table = pd.concat([pipeline.evaluate(direction, p, cells, multiome.rna.obs_names, translation_splits, labels,
                                         translator_rna2atac.thresholds) for direction, p in profiles.items()],
                      ignore_index=True).assign(config=pipeline.config_json(translated_atac.uns["profile"], counts_from))
    pictures = pipeline.umap_pictures(profiles, cells, multiome.rna.obs_names, translation_splits, labels, lambda d:
                                      warehouse.artifact_path("translation_umap", f"{context.partition_key}__{d}", ".png"))
    bars = warehouse.artifact_path("translation_method_bars", context.partition_key, ".png")
    _method_bars(table, bars, context.partition_key)
    context.add_output_metadata(output_name="result", metadata={
        **_summary(table), "methods_vs_baselines": dg.MetadataValue.md(png_markdown(bars, "methods")),
        **{f"umap_{d}": dg.MetadataValue.md(png_markdown(p, "UMAP")) for d, p in pictures.items()}})
    yield dg.Output(table)
    yield check_result("translation_metrics", "transformer_beats_best_baseline", quality.translator_vs_baselines(table))


def _method_bars(table: pd.DataFrame, path, title: str) -> None:
    """Each direction's primary metric on the random split, per method."""
    random = table[table.scenario == "random"]
    panels = {f"{d}: {m}": random[(random.direction == d) & (random.metric == m)].set_index("method").value
              for d, m in quality.TRANSLATION_PRIMARY.items()}
    kinds = {m: "transformer" if m == "cisformer" else "measured" if m == "measured" else "baseline"
             for m in table.method.unique()}
    method_bars(panels, kinds, path, ylabel="on the held-out test cells", title=title)


def _summary(table: pd.DataFrame) -> dict:
    return {"summary": dg.MetadataValue.md(
        table.pivot_table(index=["direction", "scenario", "method"], columns="metric", values="value")
        .reset_index().to_markdown(index=False, floatfmt=".3f"))}


CROSS = dict(deps=[INPUTS["translator_from"]], pool="gpu", code_version="2", kinds={"anndata"})


def _cross(context, direction: str, datasets: DatasetCatalog, compute: ComputeDevice, warehouse: WarehouseIOManager,
           multiome, gene_vocab_map, peak_vocab_matrix) -> mudata.MuData:
    spec = datasets.spec(context.partition_key)
    profiles = cross.translated_from(direction, spec, datasets.spec(spec.translator_from), multiome, gene_vocab_map,
                                     peak_vocab_matrix, warehouse.directory(), compute.torch_device())
    context.add_output_metadata({"translator_from": spec.translator_from,
                                 **{s: f"{a.n_obs} cells x {a.n_vars} features" for s, a in profiles.mod.items()}})
    return profiles


@dg.asset(**ARGS, **CROSS, tags=needs("rna", translator_from=True))
def cross_translated_atac(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                          warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                          gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix) -> mudata.MuData:
    """Every cell's accessibility translated from its RNA by the RNA→ATAC translator (random split) of
    the paired dataset named by `translator_from`, over that dataset's covered cCREs. A dataset with
    only RNA gets its ATAC this way."""
    return _cross(context, "rna2atac", datasets, compute, warehouse, multiome, gene_vocab_map, peak_vocab_matrix)


@dg.asset(**ARGS, **CROSS, tags=needs("atac", translator_from=True))
def cross_translated_rna(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                         warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                         gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix) -> mudata.MuData:
    """Every cell's expression translated from its ATAC by the ATAC→RNA translator (random split) of
    the paired dataset named by `translator_from`, over that dataset's vocabulary genes."""
    return _cross(context, "atac2rna", datasets, compute, warehouse, multiome, gene_vocab_map, peak_vocab_matrix)


@dg.asset(**ARGS, deps=[INPUTS["translator_from"], INPUTS["cell_type_column"]], code_version="1",
          tags=needs("rna.atac", translator_from=True), kinds={"parquet"})
def cross_translation_metrics(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
                              warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                              gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                              cross_translated_atac: mudata.MuData, cross_translated_rna: mudata.MuData) -> pd.DataFrame:
    """A paired dataset translated by another dataset's translators, scored against what it measured,
    beside the simple translators fitted on the same source cells (columns as `translation_metrics`)."""
    spec = datasets.spec(context.partition_key)
    table = cross.metrics_from(spec, datasets.spec(spec.translator_from), multiome, gene_vocab_map, peak_vocab_matrix,
                               {"rna2atac": cross_translated_atac, "atac2rna": cross_translated_rna},
                               warehouse.directory(), cell_labels(multiome.rna.obs, spec.cell_type_column))
    context.add_output_metadata(_summary(table))
    return table


@dg.asset(**ARGS, deps=["translated_atac", "translated_rna", "cross_translated_atac", "cross_translated_rna"],
          code_version="1", tags=needs("any"), kinds={"parquet"})
def translated_profiles(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[WarehouseIOManager]) -> pd.DataFrame:
    """Which translated profiles (.h5mu) the dataset has: direction, scenario, source dataset, path,
    cells, features."""
    return pipeline.profile_listing(context.partition_key, warehouse.directory())
