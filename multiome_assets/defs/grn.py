"""EpiAwareNet GRN assets: Stage 1 backbones (and ablations), embeddings, Stage 2 heads, exported
edge scores, baselines and the evaluation. Bodies are calls into `multiome_assets.grn`."""

import dagster as dg
import numpy as np
import pandas as pd

from multiome_assets import priors, quality
from multiome_assets.cells import cell_labels, cell_sets
from multiome_assets.defs.automation import FOLLOWS_INPUTS
from multiome_assets.defs.inputs import INPUTS
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.metadata import check_result, check_spec, curve_table, png_markdown
from multiome_assets.defs.partitions import dataset_partitions
from multiome_assets.defs.resources import ComputeDevice, DatasetCatalog
from multiome_assets.figures import method_bars
from multiome_assets.grn import baselines, genes, pipeline
from multiome_assets.grn.artifacts import (
    Backbone,
    BaselineScores,
    EdgeHeads,
    GeneEmbeddings,
)
from multiome_assets.grn.pretrain import PretrainConfig
from multiome_assets.models.edge_head import EdgeHeadConfig
from multiome_assets.models.profiles import Profile
from multiome_assets.readers import Multiome
from multiome_assets.warehouse import read_parquet

GRN_ARGS = dict(partitions_def=dataset_partitions, io_manager_key="warehouse", group_name="grn")


class BackboneConfig(dg.Config):
    profile: Profile = "cpu"  # cpu: sized for 2 CPU cores; paper: the paper's defaults, for a GPU
    seed: int = PretrainConfig.seed
    max_epochs: int | None = None  # None: the profile's
    svd_solver: str | None = None  # None: the profile's ("randomized"); "arpack": the exact SVD start


class HeadConfig(dg.Config):
    epochs: int = EdgeHeadConfig.epochs
    min_steps: int = EdgeHeadConfig.min_steps  # more epochs for small priors
    prior_pi: float = EdgeHeadConfig.prior_pi  # nnPU class prior (chosen on inner splits: benchmarks/head_selection.py)
    seed: int = EdgeHeadConfig.seed


class ExportConfig(dg.Config):
    top_targets_per_tf: int | None = 500  # None: every TF × gene pair


class BaselineConfig(dg.Config):
    methods: list[str] = ["pearson", "spearman", "wgcna", "grnboost2"]
    seed: int = 0
    grnboost2_max_cells: int | None = 500  # GRNBoost2 on a seeded sample of cells (None: all)


class GeneBudgetConfig(dg.Config):
    profile: Profile = "cpu"  # cpu: at most grn.genes.MAX_GENES["cpu"] genes; paper: every gene


class ExternalGRN(dg.Config):
    """A GRN table from another tool (SCENIC+, CellOracle, ...), one row per edge."""

    path: str  # .csv, .tsv, .txt (optionally .gz) or .parquet
    name: str | None = None  # method name external_<name>; default: the file name without suffixes
    source_col: str = "source"  # e.g. SCENIC+ eRegulons: TF, Gene, importance_TF2G
    target_col: str = "target"
    score_col: str = "score"  # CellOracle links: coef_abs


class MetricsConfig(dg.Config):
    n_random: int = 100  # degree-preserving random networks for the p-values
    top_n: int = 100  # regulator enrichment: held-out targets among each TF's top N
    external_grns: list[ExternalGRN] = []  # evaluated on the same edge space as every method


# No automation: a new prior version reruns the heads, the export and the evaluation on the genes
# the backbones were trained on; a new gene set means new backbones, a deliberate rerun.
@dg.asset(**GRN_ARGS, deps=[INPUTS["tf_list"]], code_version="1", kinds={"parquet"})
def grn_genes(context: dg.AssetExecutionContext, config: GeneBudgetConfig, datasets: DatasetCatalog,
              multiome: Multiome, prior_edges: pd.DataFrame) -> pd.DataFrame:
    """The GRN's genes: every TF of the TF list and every gene of a prior edge, then the most
    variable genes up to the profile's budget (`kept_as`; 'dropped': not in the GRN)."""
    tfs = priors.read_tf_list(datasets.spec(context.partition_key).tf_list)
    table = genes.select_genes(multiome, tfs, prior_edges, genes.budget(config.profile))
    context.add_output_metadata({"budget": genes.budget(config.profile) or "every gene",
                                 **table.kept_as.value_counts().to_dict()})
    return table


def _backbone(context, config: BackboneConfig, compute: ComputeDevice, warehouse: WarehouseIOManager, mo: Multiome,
              candidates) -> Backbone:
    device = compute.torch_device()
    overrides = {k: v for k, v in (("max_epochs", config.max_epochs), ("svd_solver", config.svd_solver)) if v}
    # a run that dies resumes from its last epoch when the asset is materialized again
    checkpoint = warehouse.artifact_path("backbone_checkpoints", f"{context.partition_key}__{context.asset_key.path[-1]}", ".pt")
    backbone = pipeline.pretrain(mo, candidates, profile=config.profile, device=device, seed=config.seed,
                                 log=context.log.info, checkpoint=checkpoint, processes=compute.processes, **overrides)
    context.add_output_metadata({
        "device": device, "processes": compute.processes, "profile": config.profile, "best_epoch": int(backbone.best_epoch),
        "best_val_loss": float(backbone.best_val_loss), "genes": mo.rna.n_vars,
        "training_curve": curve_table(backbone.history),
    })
    return backbone


@dg.asset(**GRN_ARGS, pool="gpu", code_version="5", kinds={"pytorch"})
def grn_backbone(context: dg.AssetExecutionContext, config: BackboneConfig, compute: ComputeDevice,
                 warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome, grn_genes: pd.DataFrame,
                 candidate_sets: pd.DataFrame) -> Backbone:
    """Stage 1: the gene+peak transformer pretrained by masked NB reconstruction (checkpoint + curve)."""
    return _backbone(context, config, compute, warehouse, genes.restrict(multiome, grn_genes), candidate_sets)


@dg.asset(**GRN_ARGS, pool="gpu", code_version="5", kinds={"pytorch"})
def grn_backbone_rna_only(context: dg.AssetExecutionContext, config: BackboneConfig, compute: ComputeDevice,
                          warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                          grn_genes: pd.DataFrame) -> Backbone:
    """Ablation: the backbone without ATAC (no peak tokens, no gene→peak attention)."""
    return _backbone(context, config, compute, warehouse, genes.restrict(multiome, grn_genes), None)


@dg.asset(**GRN_ARGS, pool="gpu", code_version="5", kinds={"pytorch"})
def grn_backbone_random_candidates(context: dg.AssetExecutionContext, config: BackboneConfig,
                                   compute: ComputeDevice, warehouse: dg.ResourceParam[WarehouseIOManager],
                                   multiome: Multiome, grn_genes: pd.DataFrame,
                                   randomized_candidate_sets: pd.DataFrame) -> Backbone:
    """Ablation: the backbone with each gene's candidate peaks drawn at random."""
    return _backbone(context, config, compute, warehouse, genes.restrict(multiome, grn_genes),
                     randomized_candidate_sets)


@dg.asset(**GRN_ARGS, deps=[INPUTS["cell_type_column"]], pool="gpu", code_version="7", kinds={"pytorch"})
def grn_embeddings(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                   multiome: Multiome, grn_genes: pd.DataFrame, grn_backbone: Backbone,
                   grn_backbone_rna_only: Backbone, grn_backbone_random_candidates: Backbone) -> GeneEmbeddings:
    """Frozen-backbone gene states averaged per cell set ('all', and each cell type with labels;
    a seeded sample of each set's cells where the backbone's profile sets a budget)."""
    spec = datasets.spec(context.partition_key)
    labels = cell_labels(multiome.rna.obs, spec.cell_type_column, source=str(spec.yaml_path))
    budget = grn_backbone.train_config
    sets = cell_sets(labels, multiome.n_cells, max_cells=budget.get("embed_cells_per_set"),
                     max_cells_per_type=budget.get("embed_cells_per_type"))
    embeddings = pipeline.gene_embeddings(genes.restrict(multiome, grn_genes), sets, {
        "full": grn_backbone, "rna_only": grn_backbone_rna_only, "random_candidates": grn_backbone_random_candidates,
    }, compute.torch_device(), log=context.log.info)
    context.add_output_metadata({"contexts": dg.MetadataValue.json({k: len(v) for k, v in sets.items()}),
                                 "d": grn_backbone.d_model})
    return embeddings


def _regulators(datasets: DatasetCatalog, key: str, gene_names: pd.Index) -> np.ndarray:
    return pipeline.regulator_universe(gene_names, priors.read_tf_list(datasets.spec(key).tf_list))


@dg.asset(**GRN_ARGS, deps=[INPUTS["tf_list"]], pool="gpu", code_version="6", kinds={"pytorch"},
          automation_condition=FOLLOWS_INPUTS)
def grn_head(context: dg.AssetExecutionContext, config: HeadConfig, datasets: DatasetCatalog,
             compute: ComputeDevice, prior_edges: pd.DataFrame, grn_embeddings: GeneEmbeddings) -> EdgeHeads:
    """Stage 2 heads (BCE and nnPU) on each embedding, trained per split; `all` = every prior edge."""
    gene_names = pd.Index(grn_embeddings.genes)
    heads = pipeline.train_heads(grn_embeddings, prior_edges, gene_names,
                                 _regulators(datasets, context.partition_key, gene_names), **config.model_dump(),
                                 device=compute.torch_device(), log=context.log.info)
    context.add_output_metadata({"heads": len(heads.heads), "regulators": len(heads.regulators)})
    return heads


@dg.asset(**GRN_ARGS, pool="gpu", code_version="2", kinds={"parquet"}, automation_condition=FOLLOWS_INPUTS)
def edge_scores(context: dg.AssetExecutionContext, config: ExportConfig, compute: ComputeDevice,
                prior_edges: pd.DataFrame, grn_embeddings: GeneEmbeddings, grn_head: EdgeHeads,
                grn_baselines: BaselineScores) -> pd.DataFrame:
    """The exported GRNs of every evaluated method, trained on every prior edge, over every TF of
    the TF list × every gene; each TF's best `top_targets_per_tf` targets. Per cell set for the
    heads on backbone embeddings; in `all` for the baselines and the degree-only head."""
    table = pipeline.export_scores(grn_embeddings, grn_head, grn_baselines, prior_edges, config.top_targets_per_tf,
                                   device=compute.torch_device())
    context.add_output_metadata({"regulators": len(grn_head.regulators), "methods": int(table.method.nunique()),
                                 "contexts": int(table.context.nunique())})
    return table


@dg.asset(**GRN_ARGS, deps=[INPUTS["tf_list"]], code_version="3", kinds={"sklearn"},
          automation_condition=FOLLOWS_INPUTS)
def grn_baselines(context: dg.AssetExecutionContext, config: BaselineConfig, datasets: DatasetCatalog,
                  multiome: Multiome, grn_genes: pd.DataFrame) -> BaselineScores:
    """Expression baselines (GRNBoost2, Pearson, Spearman, WGCNA-TOM) over every TF × gene."""
    mo = genes.restrict(multiome, grn_genes)
    gene_names = np.asarray(mo.rna.var_names)
    regulators = _regulators(datasets, context.partition_key, mo.rna.var_names)
    scores = baselines.expression_baselines(config.methods, mo.rna.X, gene_names, regulators, seed=config.seed,
                                            log=context.log.info, grnboost2_max_cells=config.grnboost2_max_cells)
    context.add_output_metadata({"regulators": len(regulators), "methods": ", ".join(scores)})
    return BaselineScores(regulators, gene_names, scores)


@dg.multi_asset(
    partitions_def=dataset_partitions, group_name="grn", can_subset=False, pool="gpu",
    outs={"grn_metrics": dg.AssetOut(io_manager_key="warehouse", code_version="8", kinds={"parquet"},
                                     automation_condition=FOLLOWS_INPUTS),
          "grn_regulator_enrichment": dg.AssetOut(io_manager_key="warehouse", code_version="4", kinds={"parquet"},
                                                  automation_condition=FOLLOWS_INPUTS)},
    ins={name: dg.AssetIn() for name in ("prior_edges", "grn_embeddings", "grn_head", "grn_baselines")},
    check_specs=[check_spec("grn_metrics", "transformer_beats_best_baseline",
                            "AUROC on unseen regulators (tf_heldout): epiawarenet_bce against the best expression "
                            "or prior-degree baseline; a warning when it does not beat it")],
)
def grn_evaluation(context: dg.AssetExecutionContext, config: MetricsConfig, compute: ComputeDevice,
                   warehouse: dg.ResourceParam[WarehouseIOManager], prior_edges, grn_embeddings, grn_head,
                   grn_baselines):
    """Every method on the same held-out prior edges, per split, beside the degree baselines (and the
    PR/ROC/P@K figures of the headline methods, as PNG files beside the warehouse's artifacts)."""
    metrics, enrichment, pictures = pipeline.evaluate_grn(
        pd.Index(grn_embeddings.genes), prior_edges, grn_embeddings, grn_head, grn_baselines,
        external_grns=[grn.model_dump() for grn in config.external_grns], n_random=config.n_random,
        top_n=config.top_n, device=compute.torch_device(),
        curves_path=lambda split: warehouse.artifact_path("grn_curves", f"{context.partition_key}__{split}", ".png"))
    bars = warehouse.artifact_path("grn_method_bars", context.partition_key, ".png")
    method_bars({f"AUROC, {split} split": rows.set_index("method").auroc for split, rows in metrics.groupby("split")},
                dict(zip(metrics.method, metrics.kind)), bars, ylabel="AUROC on held-out prior edges",
                title=context.partition_key)
    yield dg.Output(metrics, output_name="grn_metrics", metadata={
        "methods_vs_baselines": dg.MetadataValue.md(png_markdown(bars, "methods")),
        **{f"curves_{s}": dg.MetadataValue.md(png_markdown(p, "curves")) for s, p in pictures.items()},
        "summary": dg.MetadataValue.md(metrics[["split", "method", "auroc", "auprc_ratio",
                                                "per_target_auroc_macro"]].to_markdown(index=False, floatfmt=".3f")),
    })
    yield dg.Output(enrichment, output_name="grn_regulator_enrichment")
    yield check_result("grn_metrics", "transformer_beats_best_baseline", quality.grn_transformer_vs_baselines(metrics))


@dg.asset(**GRN_ARGS, code_version="1", kinds={"parquet"}, automation_condition=FOLLOWS_INPUTS)
def grn_metrics_history(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[WarehouseIOManager],
                        grn_metrics: pd.DataFrame, prior_versions: pd.DataFrame) -> pd.DataFrame:
    """The headline GRN metrics on every prior version the dataset was evaluated with (joined to
    `prior_versions` by content_hash: what a new prior did to the metrics)."""
    table = warehouse.table_path("grn_metrics_history", context.partition_key)
    history = read_parquet(table).drop(columns="dataset") if table.exists() else pd.DataFrame(columns=["content_hash"])
    return priors.metrics_at_version(history, grn_metrics, prior_versions.content_hash.iloc[-1])
