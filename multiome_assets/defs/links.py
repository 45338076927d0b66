"""CRE–gene links from the translators' attention, beside correlation links; per-cCRE scores,
cell-type-specific cCREs, their validation and the enrichment tables. Bodies are calls into
`multiome_assets.links.pipeline`."""
import dagster as dg
import pandas as pd
import scipy.sparse as sp

from multiome_assets.defs.automation import FOLLOWS_INPUTS
from multiome_assets.defs.inputs import INPUTS
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.metadata import png_markdown
from multiome_assets.defs.partitions import dataset_partitions
from multiome_assets.defs.resources import ComputeDevice, DatasetCatalog
from multiome_assets.grn.artifacts import EdgeHeads, GeneEmbeddings
from multiome_assets.links import pipeline
from multiome_assets.links.triplets import EDGE_METHOD
from multiome_assets.links.figures import enrichment_dotplot, link_figures, specific_cres_heatmap
from multiome_assets.readers import Multiome
from multiome_assets.translation.pipeline import Translators

ARGS = dict(partitions_def=dataset_partitions, io_manager_key="warehouse", group_name="links")


def _note(datasets: DatasetCatalog, key: str) -> dict:
    return {} if datasets.spec(key).cell_type_column else {"note": pipeline.NO_CELL_TYPES}


@dg.asset(**ARGS, deps=[INPUTS["link_window"], INPUTS["cell_type_column"]], pool="gpu", code_version="3",
          kinds={"parquet"})
def cre_gene_links(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                   multiome: Multiome, gene_vocab_map: pd.DataFrame, gene_annotation: pd.DataFrame,
                   peak_vocab_matrix: sp.csr_matrix, translation_splits: pd.DataFrame,
                   translator_atac2rna: Translators) -> pd.DataFrame:
    """cCRE→gene links within ±link_window of each TSS: `attention` (ATAC→RNA cross-attention, per
    cell type and `all`) and `correlation` (metacell peak–gene Pearson r on the translator's
    training and validation cells, `all`), ranked per gene."""
    key = context.partition_key
    table = pipeline.cre_gene_links(translator_atac2rna, multiome, gene_vocab_map, gene_annotation,
                                    peak_vocab_matrix, translation_splits, datasets.spec(key), compute.torch_device(),
                                    log=context.log.info)
    context.add_output_metadata({**_note(datasets, key), "links": dg.MetadataValue.md(
        table.groupby(["method", "cell_type"]).size().rename("links").reset_index().to_markdown(index=False))})
    return table


@dg.asset(**ARGS, deps=[INPUTS["cell_type_column"]], pool="gpu", code_version="2", kinds={"parquet"})
def gene_link_scores(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                     multiome: Multiome, gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                     translator_rna2atac: Translators) -> pd.DataFrame:
    """Per cell type, the attention each gene draws from the cCREs in RNA→ATAC translation (log10,
    min-max scaled), ranked."""
    key = context.partition_key
    context.add_output_metadata(_note(datasets, key))
    return pipeline.gene_link_scores(translator_rna2atac, multiome, gene_vocab_map, peak_vocab_matrix,
                                     datasets.spec(key), compute.torch_device(), log=context.log.info)


@dg.asset(**ARGS, deps=[INPUTS["tf_list"]], pool="gpu", code_version="1", kinds={"parquet"},
          automation_condition=FOLLOWS_INPUTS)
def tf_attention_cres(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                      multiome: Multiome, gene_vocab_map: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                      translator_rna2atac: Translators) -> pd.DataFrame:
    """Each TF gene's 500 most attended cCREs in RNA→ATAC translation (cell set `all`): what the
    `tf_attention` rows of `enrichment` test against the TF's prior targets."""
    return pipeline.tf_attention_cres(translator_rna2atac, multiome, gene_vocab_map, peak_vocab_matrix,
                                      datasets.spec(context.partition_key), compute.torch_device())


@dg.asset(**ARGS, code_version="1", kinds={"parquet"})
def link_tracks(cre_gene_links: pd.DataFrame, gene_annotation: pd.DataFrame) -> pd.DataFrame:
    """The links as genome-browser tracks: BEDPE rows (cCRE and TSS anchors, 0-based) per method and
    cell type; `multiome-assets export links` writes them as .bedpe or UCSC interact files."""
    return pipeline.link_tracks(cre_gene_links, gene_annotation)


@dg.asset(**ARGS, code_version="1", kinds={"parquet"})
def cre_link_scores(cre_gene_links: pd.DataFrame) -> pd.DataFrame:
    """Per cell type, each cCRE's attention link scores summed over its genes."""
    return pipeline.cre_link_scores(cre_gene_links)


@dg.asset(**ARGS, code_version="1", kinds={"parquet"})
def celltype_specific_cres(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[WarehouseIOManager],
                           cre_link_scores: pd.DataFrame) -> pd.DataFrame:
    """Each cCRE's score scaled to [-1, 1] across cell types, ranked 1-5; `specific` where it ranks 5
    in exactly one cell type (a heatmap of them in the metadata)."""
    table = pipeline.celltype_specific_cres(cre_link_scores)
    path = warehouse.artifact_path("specific_cres_heatmap", context.partition_key, ".png")
    drawn = specific_cres_heatmap(table, path, title=context.partition_key) if len(table) else False
    context.add_output_metadata({"specific_per_cell_type": dg.MetadataValue.json(
        table[table.specific].groupby("cell_type").size().to_dict() if len(table) else {}),
        **({"heatmap": dg.MetadataValue.md(png_markdown(path, "specific cCREs"))} if drawn else {})})
    return table


@dg.asset(**ARGS, code_version="3", kinds={"parquet"})
def link_validation(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
                    warehouse: dg.ResourceParam[WarehouseIOManager], multiome: Multiome,
                    gene_vocab_map: pd.DataFrame, gene_annotation: pd.DataFrame, peak_vocab_matrix: sp.csr_matrix,
                    translation_splits: pd.DataFrame, cre_gene_links: pd.DataFrame) -> pd.DataFrame:
    """Per method, on the held-out cells (and, labelled, on all cells): the top-N links against
    distance-matched random pairs by pseudobulk correlation (one-sided), expression by number of
    strong links, and the distance of the top links."""
    key = context.partition_key
    table = pipeline.link_validation(cre_gene_links, multiome, gene_vocab_map, gene_annotation,
                                     peak_vocab_matrix, translation_splits, datasets.spec(key))
    path = warehouse.artifact_path("link_figures", key, ".png")
    link_figures(cre_gene_links, table, path, title=key)
    context.add_output_metadata({"figures": dg.MetadataValue.md(png_markdown(path, "links")),
                                 "summary": dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".3g"))})
    return table


@dg.asset(**ARGS, deps=[INPUTS["enrichment_files"]], code_version="3", kinds={"parquet"},
          automation_condition=FOLLOWS_INPUTS)
def enrichment(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
               warehouse: dg.ResourceParam[WarehouseIOManager], cre_gene_links: pd.DataFrame,
               celltype_specific_cres: pd.DataFrame, prior_edges: pd.DataFrame, tf_attention_cres: pd.DataFrame,
               gene_link_scores: pd.DataFrame, gene_annotation: pd.DataFrame) -> pd.DataFrame:
    """Per cell type, what is over-represented among its specific cCREs: prior regulons among the
    genes they link to, chromatin remodelers and TFs among the most attended genes; and, when the
    dataset names them, BED sets, fine-mapped variants (PIP ratio) and JASPAR motifs (with a genome
    FASTA). One table, a `kind` column."""
    key = context.partition_key
    table = pipeline.enrichment_table(cre_gene_links, celltype_specific_cres, prior_edges, tf_attention_cres,
                                      gene_link_scores, gene_annotation, datasets.spec(key))
    path = warehouse.artifact_path("enrichment_dotplot", key, ".png")
    drawn = enrichment_dotplot(table[table.kind != "gwas_score"], path, title=key)
    context.add_output_metadata({**_note(datasets, key), "by_kind": dg.MetadataValue.json(
        table.groupby("kind").size().to_dict()),
        **({"dot_plot": dg.MetadataValue.md(png_markdown(path, "enrichment"))} if drawn else {})})
    return table


@dg.multi_asset(
    partitions_def=dataset_partitions, group_name="regulons", can_subset=False, pool="gpu",
    deps=[INPUTS["enrichment_files"]],
    outs={"tf_cre_gene": dg.AssetOut(io_manager_key="warehouse", code_version="1", kinds={"parquet"},
                                     automation_condition=FOLLOWS_INPUTS),
          "tf_cre_gene_metrics": dg.AssetOut(io_manager_key="warehouse", code_version="1", kinds={"parquet"},
                                             automation_condition=FOLLOWS_INPUTS)},
    ins={"edge_scores": dg.AssetIn(metadata={"where": {"method": EDGE_METHOD}}),
         **{name: dg.AssetIn() for name in ("cre_gene_links", "tf_attention_cres", "prior_edges", "grn_embeddings",
                                           "grn_head")}},
)
def tf_cre_gene(context: dg.AssetExecutionContext, datasets: DatasetCatalog, compute: ComputeDevice,
                edge_scores: pd.DataFrame, cre_gene_links: pd.DataFrame, tf_attention_cres: pd.DataFrame,
                prior_edges: pd.DataFrame, grn_embeddings: GeneEmbeddings, grn_head: EdgeHeads):
    """TF → cCRE → gene triplets per cell type: an EpiAwareNet edge, one of the gene's 10 strongest
    cCRE links (attention; correlation as the baseline) and the TF's evidence in the cCRE (its
    motif with a genome FASTA; its gene's top-attended cCREs). `tf_cre_gene_metrics`: do
    triplet-supported edges rank held-out prior edges better than the head alone, and than the
    evidence + distance alone?"""
    table, metrics = pipeline.tf_cre_gene(edge_scores, cre_gene_links, tf_attention_cres, prior_edges,
                                          grn_embeddings, grn_head, datasets.spec(context.partition_key),
                                          n_random=100, device=compute.torch_device())
    yield dg.Output(table, output_name="tf_cre_gene", metadata={"triplets": dg.MetadataValue.md(
        table.groupby(["link_method", "tf_cre_evidence"]).size().rename("triplets").reset_index()
        .to_markdown(index=False))})
    yield dg.Output(metrics, output_name="tf_cre_gene_metrics", metadata={"summary": dg.MetadataValue.md(
        metrics[["split", "tf_cre_evidence", "method", "n_supported", "auroc", "auprc_ratio",
                 "per_target_auroc_macro", "degree_matched_auroc"]].to_markdown(index=False, floatfmt=".3f"))})
