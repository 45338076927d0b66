"""EpiAwareNet GRN assets: Stage 1 backbones (and ablations), embeddings, Stage 2 heads, exported
edge scores, baselines and the evaluation. Bodies are calls into `multiome_assets.grn`."""
import base64
import json

import dagster as dg
import numpy as np
import pandas as pd

from multiome_assets.defs.inputs import INPUTS
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.partitions import dataset_partitions
from multiome_assets.defs.resources import ComputeDevice, DatasetCatalog
from multiome_assets.grn import baselines, pipeline
from multiome_assets.priors import SPLITS, read_tf_list
from multiome_assets.readers import Multiome

GRN_ARGS = dict(partitions_def=dataset_partitions, io_manager_key="warehouse", group_name="grn")


class BackboneConfig(dg.Config):
    profile: str = "cpu"  # cpu: sized for 2 CPU cores; paper: the paper's defaults, for a GPU
    seed: int = 42
    max_epochs: int | None = None  # None: the profile's
    svd_solver: str | None = None  # None: the profile's ("randomized"); "arpack": the exact SVD start


class HeadConfig(dg.Config):
    epochs: int = 20
    min_steps: int = 400  # more epochs for small priors (see EdgeHeadConfig.min_steps)
    prior_pi: float = 0.05  # nnPU class prior (chosen on inner splits: benchmarks/head_selection.py)
    seed: int = 42


class ExportConfig(dg.Config):
    top_targets_per_tf: int | None = 500  # None: every TF × gene pair


class BaselineConfig(dg.Config):
    methods: list[str] = ["pearson", "spearman", "wgcna", "grnboost2"]
    seed: int = 0


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


def _backbone(context, config: BackboneConfig, compute: ComputeDevice, mo: Multiome, candidates) -> dict:
    device = compute.torch_device()
    overrides = {k: v for k, v in (("max_epochs", config.max_epochs), ("svd_solver", config.svd_solver)) if v}
    ckpt = pipeline.pretrain(mo, candidates, profile=config.profile, device=device, seed=config.seed, **overrides)
    history = ckpt["history"]
    context.add_output_metadata({
        "device": device, "profile": config.profile, "best_epoch": int(ckpt["best_epoch"]),
        "best_val_loss": float(ckpt["best_val_loss"]),
        "training_curve": dg.MetadataValue.md(history.to_markdown(index=False, floatfmt=".4f")),
    })
    return ckpt


@dg.asset(**GRN_ARGS, pool="gpu", code_version="3", kinds={"pytorch"})
def grn_backbone(context: dg.AssetExecutionContext, config: BackboneConfig, compute: ComputeDevice,
                 multiome: Multiome, candidate_sets: pd.DataFrame) -> dict:
    """Stage 1: the gene+peak transformer pretrained by masked NB reconstruction (checkpoint + curve)."""
    return _backbone(context, config, compute, multiome, candidate_sets)


@dg.asset(**GRN_ARGS, pool="gpu", code_version="3", kinds={"pytorch"})
def grn_backbone_rna_only(context: dg.AssetExecutionContext, config: BackboneConfig, compute: ComputeDevice,
                          multiome: Multiome) -> dict:
    """Ablation: the backbone without ATAC (no peak tokens, no gene→peak attention)."""
    return _backbone(context, config, compute, multiome, None)


@dg.asset(**GRN_ARGS, pool="gpu", code_version="3", kinds={"pytorch"})
def grn_backbone_random_candidates(context: dg.AssetExecutionContext, config: BackboneConfig,
                                   compute: ComputeDevice, multiome: Multiome,
                                   randomized_candidate_sets: pd.DataFrame) -> dict:
    """Ablation: the backbone with each gene's candidate peaks drawn at random."""
    return _backbone(context, config, compute, multiome, randomized_candidate_sets)


@dg.asset(**GRN_ARGS, deps=[INPUTS["cell_type_column"]], pool="gpu", code_version="5", kinds={"pytorch"})
def grn_embeddings(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                   multiome: Multiome, grn_backbone: dict, grn_backbone_rna_only: dict,
                   grn_backbone_random_candidates: dict) -> dict:
    """Frozen-backbone gene states averaged per cell set ('all', and each cell type with labels)."""
    spec = datasets.spec(context.partition_key)
    sets = pipeline.cell_sets(multiome, spec.cell_type_column, source=str(spec.yaml_path))
    device = compute.torch_device()
    backbones = {"full": grn_backbone, "rna_only": grn_backbone_rna_only,
                 "random_candidates": grn_backbone_random_candidates}
    embeddings = {name: pipeline.embed(ckpt, multiome, sets, device) for name, ckpt in backbones.items()}
    d = grn_backbone["config"]["d_model"]
    train = grn_backbone["train_config"]
    embeddings["svd"] = pipeline.svd_embeddings(multiome, sets, d, seed=train["seed"],
                                                solver=train.get("svd_solver", "randomized"))
    context.add_output_metadata({"contexts": dg.MetadataValue.json({k: len(v) for k, v in sets.items()}), "d": d})
    return {"gene_names": list(multiome.rna.var_names), "cell_sets": sets, "embeddings": embeddings,
            "profile": grn_backbone["profile"]}


@dg.asset(**GRN_ARGS, deps=[INPUTS["tf_list"]], pool="gpu", code_version="4", kinds={"pytorch"})
def grn_head(context: dg.AssetExecutionContext, config: HeadConfig, datasets: DatasetCatalog,
             compute: ComputeDevice, multiome: Multiome, prior_edges: pd.DataFrame, grn_embeddings: dict) -> dict:
    """Stage 2 heads (BCE and nnPU) on each embedding, trained per split; `all` = every prior edge."""
    genes = multiome.rna.var_names
    regulators = pipeline.regulator_universe(genes, read_tf_list(datasets.spec(context.partition_key).tf_list))
    heads = pipeline.train_heads(grn_embeddings, prior_edges, genes, regulators,
                                 epochs=config.epochs, min_steps=config.min_steps, prior_pi=config.prior_pi, seed=config.seed,
                                 device=compute.torch_device())
    context.add_output_metadata({"heads": len(heads["heads"]), "regulators": len(regulators)})
    return heads


@dg.asset(**GRN_ARGS, deps=[INPUTS["tf_list"]], pool="gpu", code_version="1", kinds={"parquet"})
def edge_scores(context: dg.AssetExecutionContext, config: ExportConfig, datasets: DatasetCatalog,
                compute: ComputeDevice, multiome: Multiome, grn_embeddings: dict, grn_head: dict) -> pd.DataFrame:
    """The exported GRNs: every TF of the TF list × every gene, per cell set, from the heads trained
    on all prior edges; each TF's best `top_targets_per_tf` targets are kept."""
    spec = datasets.spec(context.partition_key)
    regulators = pipeline.regulator_universe(multiome.rna.var_names, read_tf_list(spec.tf_list))
    table = pipeline.export_scores(grn_embeddings, grn_head, regulators, config.top_targets_per_tf,
                                   device=compute.torch_device())
    context.add_output_metadata({"regulators": len(regulators), "contexts": int(table.context.nunique())})
    return table


@dg.asset(**GRN_ARGS, deps=[INPUTS["tf_list"]], code_version="1", kinds={"sklearn"})
def grn_baselines(context: dg.AssetExecutionContext, config: BaselineConfig, datasets: DatasetCatalog,
                  multiome: Multiome) -> dict:
    """Expression baselines (GRNBoost2, Pearson, Spearman, WGCNA-TOM) over every TF × gene."""
    spec = datasets.spec(context.partition_key)
    genes = multiome.rna.var_names
    regulators = pipeline.regulator_universe(genes, read_tf_list(spec.tf_list))
    scores = baselines.expression_baselines(config.methods, multiome.rna.X, np.asarray(genes), regulators, seed=config.seed)
    context.add_output_metadata({"regulators": len(regulators), "methods": ", ".join(scores)})
    return {"regulators": regulators, "genes": np.asarray(genes), "scores": scores}


@dg.multi_asset(
    partitions_def=dataset_partitions, group_name="grn", can_subset=False, pool="gpu",
    outs={"grn_metrics": dg.AssetOut(io_manager_key="warehouse", code_version="6", kinds={"parquet"}),
          "grn_regulator_enrichment": dg.AssetOut(io_manager_key="warehouse", code_version="3", kinds={"parquet"})},
    ins={name: dg.AssetIn() for name in ("multiome", "prior_edges", "grn_embeddings", "grn_head", "grn_baselines")},
)
def grn_evaluation(context: dg.AssetExecutionContext, config: MetricsConfig, compute: ComputeDevice,
                   warehouse: dg.ResourceParam[WarehouseIOManager], multiome, prior_edges, grn_embeddings, grn_head,
                   grn_baselines):
    """Every method on the same held-out prior edges, per split, beside the degree baselines (and the
    PR/ROC/P@K figures of the headline methods, as PNG files beside the warehouse's artifacts)."""
    from multiome_assets.grn.metrics import curves_png

    metrics, enrichment, pictures = [], [], {}
    for split in SPLITS:
        space = pipeline.edge_space(prior_edges, multiome.rna.var_names, split)
        methods = pipeline.method_scores(space, split, grn_embeddings, grn_head, grn_baselines,
                                         [grn.model_dump() for grn in config.external_grns],
                                         device=compute.torch_device())
        m, e = pipeline.evaluate_methods(methods, space, n_random=config.n_random, top_n=config.top_n)
        head = grn_head["config"]
        settings = {"prior": str(prior_edges.prior.iloc[0]), "split_seed": int(prior_edges.split_seed.iloc[0]),
                    "n_random": config.n_random,
                    "profile": grn_embeddings.get("profile", ""),
                    "head": {k: head[k] for k in ("epochs", "min_steps", "prior_pi", "neg_ratio", "lr") if k in head}}
        metrics.append(m.assign(split=split, seed=head["seed"], config=json.dumps(settings)))
        enrichment.append(e.assign(split=split))
        png = warehouse.artifact_path("grn_curves", f"{context.partition_key}__{split}", ".png")
        curves_png(pipeline.headline_methods(methods), space, png)
        pictures[split] = png
    metrics = pd.concat(metrics, ignore_index=True)
    yield dg.Output(metrics, output_name="grn_metrics", metadata={
        **{f"curves_{s}": dg.MetadataValue.md(_png_markdown(p)) for s, p in pictures.items()},
        "summary": dg.MetadataValue.md(metrics[["split", "method", "auroc", "auprc_ratio",
                                                "per_target_auroc_macro"]].to_markdown(index=False, floatfmt=".3f")),
    })
    yield dg.Output(pd.concat(enrichment, ignore_index=True), output_name="grn_regulator_enrichment")


def _png_markdown(path) -> str:
    return f"![curves](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})\n\n`{path}`"
