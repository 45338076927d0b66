"""Gene annotation: TSS, strand and body for each dataset gene, matched by symbol or Ensembl id."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from multiome_assets.dataset import DatasetError

ANNOTATION_COLUMNS = ["gene_name", "chrom", "start", "end", "strand", "tss", "gene_id", "gene_type"]


def read_annotation(path: Path) -> pd.DataFrame:
    """A gene annotation TSV with columns gene_name, chrom, start, end, strand, tss, gene_id, gene_type."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: cannot be read as a gene annotation TSV ({e})") from None
    missing = [c for c in ANNOTATION_COLUMNS if c not in table.columns]
    if missing:
        raise DatasetError(f"{path}: annotation lacks columns {missing}")
    return table[ANNOTATION_COLUMNS]


def match_genes(genes: pd.Index, gene_ids: pd.Index | None, annotation: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset gene: its annotation and how it matched (`symbol`, `ensembl_id`, `unmatched`).

    Matches the Ensembl id first when the dataset has one (ids are unambiguous), then the symbol;
    a symbol shared by several annotation rows takes the first (the annotation's own order).
    """
    ids = pd.Index(gene_ids) if gene_ids is not None else pd.Index(genes)
    by_id = annotation.drop_duplicates("gene_id").set_index("gene_id")
    by_symbol = annotation.drop_duplicates("gene_name").set_index("gene_name")
    id_hit = ids.str.split(".").str[0].isin(by_id.index)
    symbol_hit = ~id_hit & genes.isin(by_symbol.index)
    cols = ["chrom", "start", "end", "strand", "tss", "gene_id", "gene_type"]
    out = pd.DataFrame(index=genes, columns=cols)
    out.loc[id_hit] = by_id.loc[ids[id_hit].str.split(".").str[0]].assign(gene_id=lambda d: d.index)[cols].to_numpy()
    out.loc[symbol_hit] = by_symbol.loc[genes[symbol_hit], cols].to_numpy()
    out.insert(0, "matched_by", np.select([id_hit, symbol_hit], ["ensembl_id", "symbol"], "unmatched"))
    out = out.rename_axis("gene").reset_index()
    for c in ("start", "end", "tss"):
        out[c] = pd.to_numeric(out[c]).astype("Int64")
    return out.astype({"chrom": "string", "strand": "string", "gene_id": "string", "gene_type": "string"})


def read_gene_vocab(path: Path) -> pd.DataFrame:
    """Cisformer's fixed gene vocabulary: rows (Ensembl id, symbol); row number = vocabulary index."""
    try:
        vocab = pd.read_csv(path, sep="\t", header=None, names=["gene_id", "symbol"], dtype=str)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: cannot be read as a gene vocabulary ({e})") from None
    return vocab.assign(vocab_index=np.arange(len(vocab)))


def map_to_vocab(genes: pd.DataFrame, vocab: pd.DataFrame) -> pd.DataFrame:
    """Each annotated dataset gene's index in the vocabulary, by Ensembl id first, then symbol."""
    by_id = vocab.drop_duplicates("gene_id").set_index("gene_id")["vocab_index"]
    by_symbol = vocab.drop_duplicates("symbol").set_index("symbol")["vocab_index"]
    via_id = genes["gene_id"].map(by_id)
    via_symbol = genes["gene"].map(by_symbol)
    index = via_id.fillna(via_symbol)
    matched_by = np.select([via_id.notna(), via_symbol.notna()], ["ensembl_id", "symbol"], "unmatched")
    out = pd.DataFrame({"gene": genes["gene"], "vocab_index": index.astype("Int64"), "matched_by": matched_by})
    out["vocab_gene_id"] = vocab["gene_id"].reindex(out["vocab_index"].fillna(-1).astype(int)).to_numpy()
    return out
