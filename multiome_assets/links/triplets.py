"""TF → cCRE → gene triplets: EpiAwareNet's TF → gene edges joined with the cCRE → gene links
(Cisformer's attention, or correlation as the baseline) through the TF's evidence in the cCRE.

A triplet (TF t, cCRE c, gene g) in a cell type needs all three pieces:

- TF → gene: an `edge_scores` edge of `epiawarenet_bce` in that cell type's context (each TF's
  exported top targets), as a percentile of the context's edge scores;
- cCRE → gene: one of the gene's LINKS_PER_GENE strongest links of that method and cell type, as a
  percentile of the kept links' scores;
- TF → cCRE: the TF's motif in the cCRE (JASPAR, when the dataset names a genome FASTA; score 1),
  and/or the cCRE among the TF gene's most attended cCREs in RNA → ATAC translation
  (`tf_attention_cres`; 1 - (rank - 1) / the TF's number of kept cCREs). `tf_cre_evidence` says
  which.

The triplet's score is the geometric mean of the three percentiles (SCENIC+ ranks its eRegulon
triplets by an aggregate of the same three rankings); rank 1 = best within (cell type, link method,
evidence).

Evaluation (`tf_cre_gene_metrics`), on each GRN split's held-out prior edges with the GRN's own
candidates, degree controls and random networks (:func:`multiome_assets.grn.metrics.evaluate`):

- `epiawarenet_bce`: the split's TF → gene head alone;
- `triplet_attention`, `triplet_correlation`: the same pairs, those with a triplet in `all` first
  (by the triplet score with the pair's head percentile), then the others by the head alone: does
  triplet support lift held-out edges above where the head puts them?
- `evidence_distance`: the TF's evidence in a cCRE near the gene, without the head: the largest
  TF → cCRE score × (1 - distance / window) over the gene's in-window cCREs (motif + distance when the
  evidence is a motif); pairs without one score 0.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from multiome_assets.links import motifs

LINKS_PER_GENE = 10
EDGE_METHOD = "epiawarenet_bce"
COLUMNS = ["cell_type", "link_method", "tf_cre_evidence", "source", "cre", "target", "score", "rank", "cre_id",
           "chrom", "start", "end", "distance", "tf_gene_score", "tf_gene_pct", "link_score", "link_rank", "link_pct",
           "tf_cre_pct"]


def region_names(chrom, start, end) -> np.ndarray:
    """`chr-start-end` (0-based start), as GRETA and pycisTopic name regions."""
    return (pd.Series(np.asarray(chrom)).astype(str) + "-" + pd.Series(np.asarray(start)).astype(str) + "-"
            + pd.Series(np.asarray(end)).astype(str)).to_numpy()


# ---------------------------------------------------------------------------------------
# The three pieces
# ---------------------------------------------------------------------------------------
def attention_evidence(tf_attention_cres: pd.DataFrame) -> pd.DataFrame:
    """(tf, cre, tf_cre_pct, tf_cre_evidence='tf_attention') from each TF gene's top-attended cCREs."""
    kept = tf_attention_cres.groupby("tf")["rank"].transform("size").to_numpy()
    return pd.DataFrame({"tf": tf_attention_cres.tf.to_numpy(), "cre": tf_attention_cres.cre.to_numpy(),
                         "tf_cre_pct": 1 - (tf_attention_cres["rank"].to_numpy() - 1) / kept,
                         "tf_cre_evidence": "tf_attention"})


def motif_tfs(motif_name: str) -> list[str]:
    """The TF symbols of a JASPAR motif name: `Ahr::Arnt` → AHR, ARNT; `FOS::JUN(var.2)` → FOS, JUN."""
    return [part.upper() for part in re.sub(r"\(var\.\d+\)", "", motif_name).split("::") if part]


def motif_evidence(cres: pd.DataFrame, fasta, motif_file, tfs) -> pd.DataFrame:
    """(tf, cre, tf_cre_pct=1, tf_cre_evidence='motif'): a motif of the TF in the cCRE's sequence.
    `cres`: cre, chrom, start, end; `tfs`: the TF symbols to keep."""
    jaspar, hits = motifs.scan(cres, fasta, motif_file)
    cre_rows, motif_cols = np.nonzero(hits)
    owners = pd.DataFrame([(m, tf) for m, name in enumerate(jaspar.names) for tf in motif_tfs(name)],
                          columns=["motif", "tf"])
    pairs = pd.DataFrame({"cre": cres.cre.to_numpy()[cre_rows], "motif": motif_cols}).merge(owners, on="motif")
    pairs = pairs[pairs.tf.isin(set(tfs))].drop_duplicates(["tf", "cre"])
    return pd.DataFrame({"tf": pairs.tf.to_numpy(), "cre": pairs.cre.to_numpy(), "tf_cre_pct": 1.0,
                         "tf_cre_evidence": "motif"})


def strongest_links(cre_gene_links: pd.DataFrame, per_gene: int = LINKS_PER_GENE) -> pd.DataFrame:
    """Each gene's `per_gene` strongest links per (method, cell type), with `link_pct`: the score's
    percentile among the kept links of that method and cell type."""
    kept = cre_gene_links[cre_gene_links["rank"] <= per_gene]
    return kept.assign(link_pct=kept.groupby(["method", "cell_type"]).score.rank(pct=True).to_numpy())


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------
def tf_cre_gene(edge_scores: pd.DataFrame, cre_gene_links: pd.DataFrame, evidence: pd.DataFrame) -> pd.DataFrame:
    """`tf_cre_gene`: one row per (cell type, link method, evidence, TF, cCRE, gene) with all three
    pieces; see the module docstring. One cell type at a time: a join over all cell types at once
    would hold every TF-evidence × link pair of every cell type."""
    edges = edge_scores[edge_scores.method == EDGE_METHOD]
    edges = edges.assign(tf_gene_pct=edges.groupby("context").score.rank(pct=True).to_numpy())
    links = strongest_links(cre_gene_links)
    tables = []
    for (cell_type, method), typed in links.groupby(["cell_type", "method"], sort=True):
        context = edges[edges.context == cell_type]
        if context.empty:
            continue
        joined = evidence.merge(typed.rename(columns={"score": "link_score", "rank": "link_rank"}), on="cre")
        joined = joined.merge(context[["tf", "target", "score", "tf_gene_pct"]].rename(columns={"score": "tf_gene_score"}),
                              left_on=["tf", "gene"], right_on=["tf", "target"])
        if len(joined):
            tables.append(joined.assign(cell_type=cell_type, link_method=method))
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    table = pd.concat(tables, ignore_index=True)
    table["score"] = np.cbrt(table.tf_gene_pct * table.link_pct * table.tf_cre_pct)
    table["rank"] = table.groupby(["cell_type", "link_method", "tf_cre_evidence"]).score.rank(
        ascending=False, method="min").astype(np.int64)
    table = table.rename(columns={"tf": "source", "cre": "cre_id"}).assign(
        cre=lambda t: region_names(t.chrom, t.start, t.end))
    return table[COLUMNS].sort_values(["cell_type", "link_method", "tf_cre_evidence", "rank"], ignore_index=True)


# ---------------------------------------------------------------------------------------
# Edge-level scores for the evaluation
# ---------------------------------------------------------------------------------------
def _pair_max(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(R, G) dense: the largest value per (row, col), 0 where none."""
    out = np.zeros(shape)
    np.maximum.at(out, (rows, cols), values)
    return out


def _indexed(frame: pd.DataFrame, regulators: np.ndarray, genes: np.ndarray) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    r = pd.Index(regulators).get_indexer(frame.tf)
    g = pd.Index(genes).get_indexer(frame.gene)
    keep = (r >= 0) & (g >= 0)
    return frame[keep], r[keep], g[keep]


def triplet_edge_scores(head: np.ndarray, links: pd.DataFrame, evidence: pd.DataFrame, regulators: np.ndarray,
                        genes: np.ndarray) -> tuple[np.ndarray, int]:
    """(R, G) scores ranking the pairs with a triplet first (1 + the best triplet score through any
    cCRE), the others by the head's percentile; and the number of pairs with a triplet.
    `links`: one method's `all` links (gene, cre, link_pct)."""
    h = rankdata(head, method="average").reshape(head.shape) / head.size
    joined, r, g = _indexed(evidence.merge(links[["gene", "cre", "link_pct"]], on="cre"), regulators, genes)
    support = _pair_max(r, g, (joined.link_pct * joined.tf_cre_pct).to_numpy(), head.shape)
    supported = support > 0
    return np.where(supported, 1 + np.cbrt(h * support), h), int(supported.sum())


def evidence_distance_scores(pairs: pd.DataFrame, evidence: pd.DataFrame, window: int, regulators: np.ndarray,
                             genes: np.ndarray) -> np.ndarray:
    """(R, G): the TF's best evidence in a cCRE near the gene, closer counting more: max over the
    gene's in-window cCREs of tf_cre_pct × (1 - distance / window); 0 without one. `pairs`: gene, cre,
    distance."""
    joined, r, g = _indexed(evidence.merge(pairs[["gene", "cre", "distance"]], on="cre"), regulators, genes)
    closeness = 1 - joined.distance.to_numpy() / (window + 1)
    return _pair_max(r, g, joined.tf_cre_pct.to_numpy() * closeness, (len(regulators), len(genes)))
