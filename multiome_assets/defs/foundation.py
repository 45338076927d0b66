"""Foundation assets, one partition per dataset: QC'd data, annotation, candidates, vocabularies, priors."""
import dagster as dg
import numpy as np
import pandas as pd

from multiome_assets import annotation, intervals, priors, quality
from multiome_assets.defs.automation import FOLLOWS_INPUTS
from multiome_assets.defs.inputs import INPUTS, versioned
from multiome_assets.defs.io_manager import WarehouseIOManager
from multiome_assets.defs.metadata import check_result, check_spec
from multiome_assets.defs.partitions import dataset_partitions, needs
from multiome_assets.defs.resources import DatasetCatalog
from multiome_assets.files import atomic_path
from multiome_assets.inputs import file_sha256
from multiome_assets.preprocess import preprocess
from multiome_assets.readers import Multiome, gene_ids, read_dataset
from multiome_assets.warehouse import read_parquet

ASSET_ARGS = dict(partitions_def=dataset_partitions, io_manager_key="warehouse", group_name="foundation")


class CandidateConfig(dg.Config):
    window: int | None = None  # bp either side of the TSS; None: the dataset.yaml `candidate_window`
    max_candidates: int = 50


class SplitConfig(dg.Config):
    test_fraction: float = 0.2
    seed: int = 0


@dg.asset(**ASSET_ARGS, deps=[INPUTS["cells"]], code_version="1", tags=needs("any"), kinds={"anndata"})
def multiome(context: dg.AssetExecutionContext, datasets: DatasetCatalog) -> dg.Output[Multiome]:
    """QC'd, paired RNA (log1p-normalized X, raw counts in layers['counts'] when known) and binary ATAC."""
    spec = datasets.spec(context.partition_key)
    mo, report = preprocess(read_dataset(spec), spec.qc, spec.rna_values, str(spec.yaml_path))
    context.add_output_metadata({**report, "qc": dg.MetadataValue.json(spec.qc.__dict__)})
    return versioned(mo)


@dg.asset(**ASSET_ARGS, deps=[INPUTS["annotation"]], code_version="1", tags=needs("any"), kinds={"parquet"},
          check_specs=[check_spec("gene_annotation", "genes_matched",
                                  "Genes found in the annotation: an error below 30% (another species or naming)")])
def gene_annotation(context: dg.AssetExecutionContext, datasets: DatasetCatalog, multiome: Multiome):
    """Each dataset gene's TSS/strand/body; `matched_by = 'unmatched'` lists what the annotation lacks."""
    spec = datasets.spec(context.partition_key)
    var = multiome.rna.var
    genes = annotation.match_genes(var.index, gene_ids(var), annotation.read_annotation(spec.annotation))
    matched = int((genes.matched_by != "unmatched").sum())
    context.add_output_metadata(output_name="result", metadata={"matched": matched, "unmatched": len(genes) - matched})
    yield versioned(genes)
    yield check_result("gene_annotation", "genes_matched", quality.genes_matched(matched, len(genes)))


@dg.asset(**ASSET_ARGS, deps=[INPUTS["candidate_window"]], code_version="2", kinds={"pyranges", "parquet"})
def candidate_sets(context: dg.AssetExecutionContext, config: CandidateConfig, datasets: DatasetCatalog,
                   multiome: Multiome, gene_annotation: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """For each gene, the peaks within ±window of its TSS, nearest first, capped."""
    window = config.window or datasets.spec(context.partition_key).candidate_window
    cands = intervals.candidate_sets(gene_annotation, multiome.atac.var, window, config.max_candidates)
    per_gene = cands.groupby("gene").size()
    context.add_output_metadata({"window_bp": window, "genes_with_candidates": len(per_gene),
                                 "mean_candidates": float(per_gene.mean()) if len(per_gene) else 0.0,
                                 "max_candidates": int(per_gene.max()) if len(per_gene) else 0})
    return versioned(cands.assign(window_bp=window))  # not `window`: a reserved word in SQL


@dg.asset(**ASSET_ARGS, code_version="1", kinds={"parquet"})
def randomized_candidate_sets(config: SplitConfig, multiome: Multiome, candidate_sets: pd.DataFrame) -> pd.DataFrame:
    """Ablation: as many candidates per gene as `candidate_sets`, drawn uniformly from all peaks."""
    return intervals.randomized_candidate_sets(candidate_sets, multiome.atac.var_names, config.seed)


@dg.asset(**ASSET_ARGS, deps=[INPUTS["ccre_vocabulary"]], code_version="1", tags=needs("any"), kinds={"scipy"},
          check_specs=[check_spec("peak_vocab_matrix", "ccre_overlap",
                                  "Peaks overlapping the hg38 cCRE vocabulary: an error below 50% (another genome)")])
def peak_vocab_matrix(context: dg.AssetExecutionContext, datasets: DatasetCatalog, multiome: Multiome):
    """Cisformer's input: cells × 1,033,239 cCREs, True where an accessible peak overlaps the cCRE (≥1 bp)."""
    vocab = intervals.read_ccre_bed(datasets.spec(context.partition_key).reference("ccre_hg38"))
    peak_vocab = intervals.peak_to_vocab(multiome.atac.var, vocab)
    matrix = intervals.binarize_to_vocab(multiome.atac.X, peak_vocab)
    overlapping = int((np.diff(peak_vocab.indptr) > 0).sum())
    context.add_output_metadata(output_name="result", metadata={
        "shape": str(matrix.shape),
        "peaks_overlapping_vocab": overlapping,
        "mean_active_cres_per_cell": float(matrix.nnz / max(matrix.shape[0], 1)),
    })
    yield versioned(matrix)
    yield check_result("peak_vocab_matrix", "ccre_overlap", quality.ccre_overlap(overlapping, multiome.atac.n_vars))


@dg.asset(**ASSET_ARGS, deps=[INPUTS["gene_vocabulary"]], code_version="1", tags=needs("any"), kinds={"parquet"})
def gene_vocab_map(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
                   gene_annotation: pd.DataFrame) -> dg.Output[pd.DataFrame]:
    """Dataset genes → Cisformer's fixed 38,244-gene vocabulary (by Ensembl id, else symbol)."""
    vocab = annotation.read_gene_vocab(datasets.spec(context.partition_key).reference("gene_vocab_38244"))
    mapping = annotation.map_to_vocab(gene_annotation, vocab)
    context.add_output_metadata({"in_vocab": int(mapping.vocab_index.notna().sum()), "genes": len(mapping)})
    return versioned(mapping)


@dg.asset(**ASSET_ARGS, deps=[INPUTS["prior"], INPUTS["tf_list"]], code_version="1", kinds={"parquet"},
          automation_condition=FOLLOWS_INPUTS,
          check_specs=[check_spec("prior_edges", "prior_coverage",
                                  "The prior's edges within the dataset's genes and TF list: a warning below 5%")])
def prior_edges(context: dg.AssetExecutionContext, config: SplitConfig, datasets: DatasetCatalog, multiome: Multiome):
    """The dataset's prior (TF → target) within its genes and TF list, with a random 80/20 edge
    split and a TF-held-out split (whole regulators held out). Seeded."""
    spec = datasets.spec(context.partition_key)
    edges = priors.load_prior_edges(spec.prior, multiome.rna.var_names, priors.read_tf_list(spec.tf_list),
                                    test_fraction=config.test_fraction, seed=config.seed)
    context.add_output_metadata(output_name="result", metadata={"prior": spec.prior.name, "edges": len(edges), "tfs": int(edges.tf.nunique()),
                                 "heldout_tfs": int(edges.loc[edges.split_tf_heldout == "test", "tf"].nunique())})
    yield versioned(edges)
    yield check_result("prior_edges", "prior_coverage",
                       quality.prior_coverage(len(edges), len(priors.read_prior(spec.prior))))


@dg.asset(**ASSET_ARGS, code_version="1", kinds={"parquet"}, automation_condition=FOLLOWS_INPUTS)
def prior_versions(context: dg.AssetExecutionContext, datasets: DatasetCatalog,
                   warehouse: dg.ResourceParam[WarehouseIOManager], prior_edges: pd.DataFrame) -> pd.DataFrame:
    """Each version of the dataset's prior it has been built with: content hash, when first seen, its
    edges and TFs in the dataset, edges added and removed against the version before."""
    key = context.partition_key
    spec = datasets.spec(key)
    table = warehouse.table_path("prior_versions", key)
    snapshot = warehouse.artifact_path("prior_versions", key, ".edges.parquet")  # the last version's edges
    history = read_parquet(table).drop(columns="dataset") if table.exists() else pd.DataFrame(columns=priors.VERSION_COLUMNS)
    updated = priors.append_version(history, prior_edges, spec.prior.name, file_sha256(spec.prior)[:16],
                                    read_parquet(snapshot) if snapshot.exists() else None,
                                    pd.Timestamp.now("UTC").isoformat(timespec="seconds"))
    with atomic_path(snapshot) as tmp:
        prior_edges[["tf", "target"]].to_parquet(tmp, index=False)
    context.add_output_metadata({"versions": len(updated), "latest": updated.content_hash.iloc[-1]})
    return updated
