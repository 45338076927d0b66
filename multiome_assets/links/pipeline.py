"""The link workflow as plain functions over the foundation and translator assets; each asset of
`defs/links.py` is one call here."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.cells import cell_labels, cell_sets
from multiome_assets.dataset import DatasetSpec
from multiome_assets.intervals import read_ccre_bed
from multiome_assets.grn.artifacts import EdgeHeads, GeneEmbeddings, HeadInput
from multiome_assets.grn.metrics import evaluate
from multiome_assets.grn.nulls import null_networks
from multiome_assets.grn.pipeline import edge_space, head_scores
from multiome_assets.links import analysis, enrichment, extract, tracks, triplets
from multiome_assets.preprocess import log_normalize
from multiome_assets.priors import SPLITS, read_tf_list
from multiome_assets.readers import Multiome
from multiome_assets.translation.pipeline import Translators, load_cells, vocab_genes
from multiome_assets.translation.splits import rows_of
from multiome_assets.translation.tokens import VocabCells
from multiome_assets.translation.train import TrainConfig, training_config

SCENARIO = "random"  # the translator whose attention is read: trained on 80% of the cells
NO_CELL_TYPES = "no cell_type_column: one cell set, `all`; no cell-type-specific cCREs or enrichment"


def _cells_and_pairs(mo: Multiome, gene_vocab_map, gene_annotation, peak_vocab_matrix, spec: DatasetSpec):
    cells, _ = load_cells(mo, gene_vocab_map, peak_vocab_matrix, spec)
    genes = gene_vocab_map.merge(gene_annotation[["gene", "chrom", "tss"]], on="gene")
    vocab = read_ccre_bed(spec.reference("ccre_hg38"))
    pairs = extract.window_pairs(cells, genes, vocab, spec.link_window)
    return cells, pairs, vocab.Chromosome.to_numpy()[cells.cres]


def _log_expression(cells) -> sp.csr_matrix:
    """(cells, len(cells.genes)) log-normalized expression of the vocabulary genes."""
    return log_normalize(cells.rna[:, cells.genes].tocsr())


def seen_and_held_out(splits: pd.DataFrame, cell_names: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """The cells the links may learn from (the `random` translator's training and validation cells)
    and the held-out cells that validate them (its test cells)."""
    seen = np.sort(np.r_[rows_of(splits, cell_names, SCENARIO, "train"), rows_of(splits, cell_names, SCENARIO, "validation")])
    return seen, rows_of(splits, cell_names, SCENARIO, "test")


def _rows(cells: VocabCells, rows: np.ndarray) -> VocabCells:
    return replace(cells, rna=cells.rna[rows], atac=cells.atac[rows])


def link_cell_sets(labels: np.ndarray | None, n_cells: int, config: TrainConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """The cells whose attention the links read: `all` and each cell type, a seeded sample of at
    most the profile's `max_link_cells` (`max_link_cells_per_type` for a cell type)."""
    return cell_sets(labels, n_cells, max_cells=config.max_link_cells, max_cells_per_type=config.max_link_cells_per_type,
                     seed=seed)


def cre_gene_links(translators: Translators, mo: Multiome, gene_vocab_map: pd.DataFrame,
                   gene_annotation: pd.DataFrame, peak_vocab_matrix, splits: pd.DataFrame, spec: DatasetSpec,
                   device: str, log=None) -> pd.DataFrame:
    """`cre_gene_links`: attention links per cell type (and `all`), correlation links (`all`). The
    correlation links see the cells the translator learned from, not its test cells, so that both
    methods can be validated on the same held-out cells."""
    cells, pairs, cre_chrom = _cells_and_pairs(mo, gene_vocab_map, gene_annotation, peak_vocab_matrix, spec)
    config = training_config("atac2rna", translators.profile, 0)
    sets = link_cell_sets(cell_labels(mo.rna.obs, spec.cell_type_column), cells.n_cells, config)
    attention = extract.attention_links(translators.model(SCENARIO, device), cells, pairs, sets,
                                        gene_chunk=config.n_queries, max_cres=config.max_source, device=device, log=log)
    seen = _rows(cells, seen_and_held_out(splits, mo.rna.obs_names)[0])
    correlation = extract.correlation_links(seen, _log_expression(seen), pairs, cre_chrom)
    return pd.concat([extract.links_table(pairs, attention, "attention"),
                      extract.links_table(pairs, correlation, "correlation")], ignore_index=True)


def gene_link_scores(translators: Translators, mo: Multiome, gene_vocab_map: pd.DataFrame, peak_vocab_matrix,
                     spec: DatasetSpec, device: str, log=None) -> pd.DataFrame:
    """`gene_link_scores`: per cell type (and `all`), how much attention each gene draws from the
    cCREs in RNA→ATAC translation (log10, min-max scaled), ranked (1 = most)."""
    cells, _ = load_cells(mo, gene_vocab_map, peak_vocab_matrix, spec)
    config = training_config("rna2atac", translators.profile, 0)
    sets = link_cell_sets(cell_labels(mo.rna.obs, spec.cell_type_column), cells.n_cells, config)
    scores = extract.gene_link_scores(translators.model(SCENARIO, device), cells, sets, cre_chunk=config.n_queries,
                                      max_genes=config.max_source, device=device, log=log)
    vocab = vocab_genes(cells.genes, spec.reference("gene_vocab_38244"))
    table = pd.DataFrame({"cell_type": scores.cell_set.to_numpy(), "gene": vocab.symbol.to_numpy()[scores.gene_pos],
                          "gene_id": vocab.index.to_numpy()[scores.gene_pos], "score": scores.score.to_numpy(),
                          "attention_sum": scores.raw.to_numpy()})
    table["rank"] = table.groupby("cell_type").score.rank(ascending=False, method="min").astype(np.int64)
    return table.sort_values(["cell_type", "rank"], ignore_index=True)


def cre_link_scores(cre_gene_links: pd.DataFrame) -> pd.DataFrame:
    """`cre_link_scores`: per cell type, each cCRE's attention link scores summed; a dataset without
    cell types gets its one set, `all`."""
    attention = cre_gene_links[cre_gene_links.method == "attention"]
    typed = attention.cell_type != "all"
    return analysis.cre_link_scores(attention[typed] if typed.any() else attention)


TF_TOP_CRES = 500  # each TF gene's most attended cCREs kept


def tf_attention_cres(translators: Translators, mo: Multiome, gene_vocab_map: pd.DataFrame, peak_vocab_matrix,
                      spec: DatasetSpec, device: str) -> pd.DataFrame:
    """`tf_attention_cres`: each TF gene's TF_TOP_CRES most attended cCREs in RNA→ATAC translation,
    over the `all` cell set (the paper's ChIP-seq check of a TF's top-attended peaks reads these)."""
    cells, _ = load_cells(mo, gene_vocab_map, peak_vocab_matrix, spec)
    config = training_config("rna2atac", translators.profile, 0)
    rows = cell_sets(None, cells.n_cells, max_cells=config.max_link_cells)["all"]
    vocab = vocab_genes(cells.genes, spec.reference("gene_vocab_38244"))
    named = gene_vocab_map.dropna(subset=["vocab_index"]).drop_duplicates("vocab_index")
    names = named.set_index(named.vocab_index.astype(np.int64)).gene.reindex(cells.genes).fillna(
        pd.Series(vocab.symbol.to_numpy(), index=cells.genes)).to_numpy()
    tf_pos = np.flatnonzero(pd.Index(names).isin(read_tf_list(spec.tf_list)))
    top = extract.tf_attended_cres(translators.model(SCENARIO, device), cells, rows, tf_pos, cre_chunk=config.n_queries,
                                   max_genes=config.max_source, top=TF_TOP_CRES, device=device)
    bed = read_ccre_bed(spec.reference("ccre_hg38")).iloc[cells.cres[top.cre_pos.to_numpy()]]
    return pd.DataFrame({"tf": names[top.tf_pos.to_numpy()], "cre": [f"cCRE{i}" for i in cells.cres[top.cre_pos.to_numpy()]],
                         "chrom": bed.Chromosome.to_numpy(), "start": bed.Start.to_numpy(), "end": bed.End.to_numpy(),
                         "attention": top.attention.to_numpy(), "rank": top["rank"].to_numpy()})


def cre_gwas_scores(cre_gene_links: pd.DataFrame) -> pd.DataFrame:
    """Each cCRE's summed attention link score per cell type, `all` included: what the GWAS score ranks."""
    return analysis.cre_link_scores(cre_gene_links[cre_gene_links.method == "attention"])


def celltype_specific_cres(cre_scores: pd.DataFrame) -> pd.DataFrame:
    """`celltype_specific_cres`: ranks 1-5 of each cCRE across cell types; none with one cell set."""
    if cre_scores.cell_type.nunique() < 2:
        return pd.DataFrame(columns=["cre", "cell_type", "scaled_score", "rank", "specific"])
    return analysis.celltype_specific(cre_scores)


def link_validation(cre_gene_links: pd.DataFrame, mo: Multiome, gene_vocab_map: pd.DataFrame,
                    gene_annotation: pd.DataFrame, peak_vocab_matrix, splits: pd.DataFrame,
                    spec: DatasetSpec) -> pd.DataFrame:
    """`link_validation` for each method, on the held-out cells (`cells` = 'held_out': the test
    cells of the split whose translator made the links, which neither method learned from) and,
    labelled 'all (in-sample)', on every cell. Pseudobulks are the cell types (or metacells)."""
    cells, pairs, _ = _cells_and_pairs(mo, gene_vocab_map, gene_annotation, peak_vocab_matrix, spec)
    labels = cell_labels(mo.rna.obs, spec.cell_type_column)
    named = gene_vocab_map.dropna(subset=["vocab_index"]).drop_duplicates("vocab_index")
    names = named.set_index(named.vocab_index.astype(np.int64)).gene.reindex(cells.genes).to_numpy()
    index = pd.MultiIndex.from_frame(pairs[["gene", "cre"]])
    distance = pd.Series(pairs.distance.to_numpy(), index=index)
    _, held_out = seen_and_held_out(splits, mo.rna.obs_names)
    tables = []
    for name, rows in (("held_out", held_out), ("all (in-sample)", np.arange(cells.n_cells))):
        part = _rows(cells, rows)
        expression = _log_expression(part)
        r = pd.Series(_pseudobulk_correlation(part, expression, None if labels is None else labels[rows], pairs), index=index)
        gene_mean = pd.Series(np.asarray(expression.mean(0)).ravel(), index=names)
        tables += [analysis.validate(cre_gene_links[cre_gene_links.method == m], r, distance, gene_mean, m)
                   .assign(cells=name, n_cells=len(rows)) for m in ("attention", "correlation")]
    table = pd.concat(tables, ignore_index=True)
    return table.assign(fdr=enrichment.fdr_over_table(table.pvalue))  # the family: the whole table


def _pseudobulk_correlation(cells: VocabCells, expression: sp.csr_matrix, labels: np.ndarray | None,
                            pairs: pd.DataFrame) -> np.ndarray:
    """Per in-window pair, Pearson r across pseudobulks: the cell types with labels (3 or more),
    else metacells."""
    if labels is not None and len(np.unique(labels)) >= 3:
        kinds, group = np.unique(labels, return_inverse=True)
        weights = sp.csr_matrix((np.ones(len(group)), (group, np.arange(len(group)))), shape=(len(kinds), len(group)))
        weights = sp.diags(1 / np.asarray(weights.sum(1)).ravel()) @ weights
    else:
        weights = extract.metacells(expression)
    return extract.correlation((weights @ expression).toarray(),
                               (weights @ cells.atac[:, cells.cres].astype(np.float64)).toarray(),
                               pairs.gene_pos.to_numpy(), pairs.cre_pos.to_numpy())


def enrichment_table(cre_gene_links: pd.DataFrame, specific: pd.DataFrame, prior_edges: pd.DataFrame,
                     tf_cres: pd.DataFrame, gene_scores: pd.DataFrame, gene_annotation: pd.DataFrame,
                     spec: DatasetSpec) -> pd.DataFrame:
    """`enrichment`: regulons, each TF's top-attended cCREs near its prior targets and the
    remodeler/TF gene classes always; BED overlaps, causal variants, the GWAS score and motifs when
    the dataset names those files."""
    sets = enrichment.specific_sets(specific)
    rows = enrichment.regulons(cre_gene_links, sets, prior_edges)
    if not gene_scores.empty:
        rows += enrichment.gene_classes(gene_scores, read_tf_list(spec.tf_list))
    rows += enrichment.tf_attention_targets(tf_cres, prior_edges, gene_annotation,
                                            cre_gene_links[["cre", "chrom", "start", "end"]].drop_duplicates("cre"))
    cres = cre_gene_links[["cre", "chrom", "start", "end"]].drop_duplicates("cre").reset_index(drop=True)
    if spec.enrichment_beds:
        rows += enrichment.bed_overlaps(cres, sets, spec.enrichment_beds)
    if spec.fine_mapped_variants:
        if spec.genome_fasta:
            enrichment.check_reference_alleles(spec.fine_mapped_variants, spec.genome_fasta)
        rows += enrichment.causal_variants(cres, sets, spec.fine_mapped_variants)
        rows += enrichment.gwas_scores(cre_gwas_scores(cre_gene_links), spec.fine_mapped_variants)
    if spec.genome_fasta:
        rows += enrichment.motif_enrichment(cres, sets, spec.genome_fasta, spec.reference("jaspar2024"))
    return enrichment.with_fdr(rows)


def link_tracks(cre_gene_links: pd.DataFrame, gene_annotation: pd.DataFrame) -> pd.DataFrame:
    """`link_tracks`: every link as a BEDPE row (cCRE and TSS anchors, 0-based), per method and cell type."""
    return tracks.link_tracks(cre_gene_links, gene_annotation)


def tf_cre_evidence(tf_attention_cres: pd.DataFrame, cre_gene_links: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Each TF's evidence in cCREs: its gene's top-attended cCREs always; its JASPAR motifs in the
    linked cCREs when the dataset names a genome FASTA."""
    evidence = [triplets.attention_evidence(tf_attention_cres)]
    if spec.genome_fasta:
        cres = cre_gene_links[["cre", "chrom", "start", "end"]].drop_duplicates("cre").reset_index(drop=True)
        evidence.append(triplets.motif_evidence(cres, spec.genome_fasta, spec.reference("jaspar2024"),
                                                read_tf_list(spec.tf_list)))
    return pd.concat(evidence, ignore_index=True)


def tf_cre_gene(edge_scores: pd.DataFrame, cre_gene_links: pd.DataFrame, tf_attention_cres: pd.DataFrame,
                prior_edges: pd.DataFrame, embeddings: GeneEmbeddings, heads: EdgeHeads, spec: DatasetSpec, *,
                n_random: int, device: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`tf_cre_gene` (the triplets of every cell type) and `tf_cre_gene_metrics`."""
    evidence = tf_cre_evidence(tf_attention_cres, cre_gene_links, spec)
    return (triplets.tf_cre_gene(edge_scores, cre_gene_links, evidence),
            triplet_metrics(cre_gene_links, evidence, prior_edges, embeddings, heads, spec.link_window,
                            n_random=n_random, device=device))


def triplet_metrics(cre_gene_links: pd.DataFrame, evidence: pd.DataFrame, prior_edges: pd.DataFrame,
                    embeddings: GeneEmbeddings, heads: EdgeHeads, window: int, *, n_random: int,
                    device: str) -> pd.DataFrame:
    """On each GRN split's held-out prior edges (cell set `all`): the split's head alone, the pairs
    with a triplet first (attention links, correlation links), and the TF's evidence + distance alone;
    one row per split, evidence kind and method."""
    everyone = cre_gene_links[cre_gene_links.cell_type == "all"]
    links = triplets.strongest_links(everyone)
    pairs = everyone.drop_duplicates(["gene", "cre"])
    rows = []
    for split in SPLITS:
        space = edge_space(prior_edges, pd.Index(embeddings.genes), split)
        head = head_scores(space, split, embeddings, heads, device, inputs=(HeadInput("full"),),
                           objectives=("bce",))[triplets.EDGE_METHOD]
        networks = null_networks(space, n_random=n_random)  # the same for every method
        for kind, tf_cres in evidence.groupby("tf_cre_evidence"):
            methods = {triplets.EDGE_METHOD: (head, np.nan)}
            for method in ("attention", "correlation"):
                methods[f"triplet_{method}"] = triplets.triplet_edge_scores(
                    head, links[links.method == method], tf_cres, space.regulators, space.genes)
            methods["evidence_distance"] = (triplets.evidence_distance_scores(
                pairs, tf_cres, window, space.regulators, space.genes), np.nan)
            rows += [{"split": split, "tf_cre_evidence": kind, "method": name, "n_supported": supported,
                      **evaluate(scores, space, n_random=n_random, networks=networks)}
                     for name, (scores, supported) in methods.items()]
    return pd.DataFrame(rows)
