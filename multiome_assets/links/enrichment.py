"""The `enrichment` table: what is over-represented among each cell type's specific cCREs (and the
genes they link to), one row per (kind, cell type, term).

- `regulon`: a prior regulon (TF -> targets of the dataset's prior) among the genes linked to the
  cell type's specific cCREs, against every gene linked in that cell type. Hypergeometric, BH.
- `bed_overlap`: a user-supplied BED set (ChIP-seq peaks, say) overlapping the specific cCREs,
  against every scored cCRE. Hypergeometric, BH.
- `causal_variants`: fine-mapped variants on the specific cCREs: the mean posterior inclusion
  probability (PIP) of variants on them over that on the other scored cCREs (Cisformer's score);
  one-sided Mann–Whitney on the PIPs.
- `motif`: a JASPAR motif in the specific cCREs' sequence against the other scored cCREs', when the
  dataset names a genome FASTA. Hypergeometric, BH.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyranges as pr
from scipy import stats as scipy_stats

from multiome_assets.dataset import DatasetError
from multiome_assets.links import motifs
from multiome_assets.stats import bh_fdr, hypergeometric_sf

COLUMNS = ["kind", "cell_type", "term", "n_background", "n_term", "n_selected", "n_hits", "expected", "fold",
           "pvalue", "fdr"]
MIN_TERM = 3
# GRCh38 primary chromosome lengths: a BED or variant beyond them is of another build
HG38 = {"chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555, "chr5": 181538259,
        "chr6": 170805979, "chr7": 159345973, "chr8": 145138636, "chr9": 138394717, "chr10": 133797422,
        "chr11": 135086622, "chr12": 133275309, "chr13": 114364328, "chr14": 107043718, "chr15": 101991189,
        "chr16": 90338345, "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
        "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415, "chrM": 16569}


def hypergeometric_rows(kind: str, cell_type: str, background: np.ndarray, selected: np.ndarray,
                        terms: dict[str, np.ndarray]) -> list[dict]:
    """Rows for terms (name -> members) among `selected` out of `background` (arrays of ids)."""
    background = np.unique(background)
    chosen = np.intersect1d(selected, background)
    rows = []
    for term, members in terms.items():
        in_bg = np.intersect1d(members, background)
        if len(in_bg) < MIN_TERM or not len(chosen):
            continue
        hits = len(np.intersect1d(in_bg, chosen))
        expected = len(chosen) * len(in_bg) / len(background)
        rows.append({"kind": kind, "cell_type": cell_type, "term": term, "n_background": len(background),
                     "n_term": len(in_bg), "n_selected": len(chosen), "n_hits": hits, "expected": expected,
                     "fold": hits / expected,
                     "pvalue": float(hypergeometric_sf(hits, len(background), len(in_bg), len(chosen)))})
    return rows


def with_fdr(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table, BH-adjusted within each (kind, cell type)."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    for _, group in table.groupby(["kind", "cell_type"]):
        if group.kind.iloc[0] != "causal_variants":
            table.loc[group.index, "fdr"] = bh_fdr(group.pvalue.to_numpy())
    return table


def specific_sets(specific: pd.DataFrame) -> dict[str, np.ndarray]:
    """Cell type -> its specific cCREs."""
    if specific.empty:
        return {}
    chosen = specific[specific.specific.astype(bool)]
    return {t: g.cre.to_numpy() for t, g in chosen.groupby("cell_type")}


def regulons(links: pd.DataFrame, specific: dict[str, np.ndarray], prior: pd.DataFrame) -> list[dict]:
    """`regulon` rows: genes linked (attention, that cell type) to its specific cCREs vs every gene
    it links; regulons from the prior's (tf, target) edges."""
    terms = {tf: g.target.to_numpy() for tf, g in prior.groupby("tf")}
    attention = links[links.method == "attention"]
    rows = []
    for cell_type, cres in specific.items():
        typed = attention[attention.cell_type == cell_type]
        rows += hypergeometric_rows("regulon", cell_type, typed.gene.to_numpy(),
                                    typed[typed.cre.isin(cres)].gene.unique(), terms)
    return rows


def read_bed(path: Path) -> pd.DataFrame:
    """chrom, start, end of a BED file; refused naming the file and line when a line is not BED or
    not on hg38 (a chromosome name or coordinate hg38 lacks)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: the BED file does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith(("#", "track", "browser")):
            continue
        fields = line.split("\t")
        try:
            chrom, start, end = fields[0], int(fields[1]), int(fields[2])
        except (IndexError, ValueError):
            raise DatasetError(f"{path}, line {number}: not BED (chrom, start, end separated by tabs): {line[:60]!r}") from None
        _check_hg38(path, number, chrom, start, end)
        rows.append((chrom, start, end))
    if not rows:
        raise DatasetError(f"{path}: no intervals")
    return pd.DataFrame(rows, columns=["chrom", "start", "end"])


def read_variants(path: Path) -> pd.DataFrame:
    """chrom, start, end (0-based, half-open: the one base), pip of a fine-mapped variant table
    (tab-separated, header with chrom, pos, pip). `pos` is 1-based, as in VCF and fine-mapping
    output; it is converted here, once: the base at pos is [pos - 1, pos)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: the variant file does not exist")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"chrom": str})
    except (ValueError, pd.errors.ParserError) as e:
        raise DatasetError(f"{path}: not a tab-separated table ({e})") from None
    missing = {"chrom", "pos", "pip"} - set(table.columns)
    if missing:
        raise DatasetError(f"{path}: needs columns chrom, pos, pip; lacks {sorted(missing)}")
    pos, pip = pd.to_numeric(table.pos, errors="coerce"), pd.to_numeric(table.pip, errors="coerce")
    bad = (pos.isna() | pip.isna() | (pos != pos.round())).to_numpy()
    if bad.any():
        raise DatasetError(f"{path}, line {int(np.argmax(bad)) + 2}: pos must be a whole number and pip a number")
    outside = ((pip < 0) | (pip > 1)).to_numpy()
    if outside.any():
        i = int(np.argmax(outside))
        raise DatasetError(f"{path}, line {i + 2}: pip {pip.iloc[i]} is not a probability")
    variants = pd.DataFrame({"chrom": table.chrom.to_numpy(), "start": pos.to_numpy(np.int64) - 1,
                             "end": pos.to_numpy(np.int64), "pip": pip.to_numpy(np.float64)})
    _check_build(path, variants, first_line=2, what="pos (1-based)")
    return variants


def _check_build(path: Path, intervals: pd.DataFrame, first_line: int, what: str) -> None:
    """Refuse (naming the first bad line) a chromosome hg38 lacks or a position beyond its end."""
    length = intervals.chrom.map(HG38)
    unknown = length.isna().to_numpy()
    beyond = ~unknown & ((intervals.start < 0) | (intervals.end > length.fillna(0))).to_numpy()
    for bad, problem in ((unknown, "is not an hg38 chromosome name (chr1-chr22, chrX, chrY, chrM): another "
                                   "genome build or naming?"),
                         (beyond, "lies beyond hg38's chromosome end: another genome build?")):
        if bad.any():
            i = int(np.argmax(bad))
            raise DatasetError(f"{path}, line {i + first_line}: {intervals.chrom.iloc[i]} {what} "
                               f"{intervals.end.iloc[i]:,} {problem}")


def _check_hg38(path: Path, number: int, chrom: str, start: int, end: int) -> None:
    if chrom not in HG38:
        raise DatasetError(f"{path}, line {number}: chromosome {chrom!r} is not an hg38 name (chr1-chr22, chrX, "
                           "chrY, chrM): another genome build or naming?")
    if not 0 <= start < end <= HG38[chrom]:
        raise DatasetError(f"{path}, line {number}: {chrom}:{start}-{end} is not within hg38's {chrom} "
                           f"({HG38[chrom]:,} bp): another genome build?")


def _overlapping(cres: pd.DataFrame, intervals: pd.DataFrame) -> np.ndarray:
    """The cCREs (rows of `cres`: cre, chrom, start, end) that overlap any interval by >= 1 bp."""
    a = pr.PyRanges(pd.DataFrame({"Chromosome": cres.chrom.to_numpy(), "Start": cres.start.to_numpy(),
                                  "End": cres.end.to_numpy(), "cre": cres.cre.to_numpy()}))
    b = pr.PyRanges(intervals.rename(columns={"chrom": "Chromosome", "start": "Start", "end": "End"}))
    hits = a.overlap(b).df
    return np.unique(hits.cre.to_numpy()) if not hits.empty else np.array([], dtype=object)


def bed_overlaps(cres: pd.DataFrame, specific: dict[str, np.ndarray], beds: dict[str, Path]) -> list[dict]:
    """`bed_overlap` rows: each BED set among each cell type's specific cCREs vs every scored cCRE."""
    terms = {name: _overlapping(cres, read_bed(path)) for name, path in beds.items()}
    return [row for cell_type, chosen in specific.items()
            for row in hypergeometric_rows("bed_overlap", cell_type, cres.cre.to_numpy(), chosen, terms)]


def causal_variants(cres: pd.DataFrame, specific: dict[str, np.ndarray], path: Path) -> list[dict]:
    """`causal_variants` rows: mean PIP of variants on the specific cCREs over that on the others."""
    variants = read_variants(path)
    v = pr.PyRanges(pd.DataFrame({"Chromosome": variants.chrom, "Start": variants.start, "End": variants.end,
                                  "pip": variants.pip}))
    c = pr.PyRanges(pd.DataFrame({"Chromosome": cres.chrom.to_numpy(), "Start": cres.start.to_numpy(),
                                  "End": cres.end.to_numpy(), "cre": cres.cre.to_numpy()}))
    on = v.join(c).df
    rows = []
    for cell_type, chosen in specific.items():
        if on.empty:
            break
        inside = on.cre.isin(chosen).to_numpy()
        top, other = on.pip.to_numpy()[inside], on.pip.to_numpy()[~inside]
        if not len(top) or not len(other):
            continue
        p = scipy_stats.mannwhitneyu(top, other, alternative="greater").pvalue
        rows.append({"kind": "causal_variants", "cell_type": cell_type, "term": Path(path).name,
                     "n_background": len(on), "n_term": len(on), "n_selected": len(chosen), "n_hits": len(top),
                     "expected": float(other.mean()), "fold": float(top.mean() / other.mean()) if other.mean() > 0 else np.nan,
                     "pvalue": float(p)})
    return rows


def motif_enrichment(cres: pd.DataFrame, specific: dict[str, np.ndarray], fasta: Path, motif_file: Path) -> list[dict]:
    """`motif` rows: each motif among each cell type's specific cCREs vs every scored cCRE."""
    jaspar = motifs.read_meme(motif_file)
    genome = motifs.read_fasta(fasta, set(cres.chrom))
    sequences, lengths = motifs.one_hot(genome, cres, fasta)
    hits = motifs.motif_hits(jaspar, sequences, lengths)
    ids = cres.cre.to_numpy()
    terms = {f"{name} ({mid})": ids[hits[:, m]] for m, (mid, name) in enumerate(zip(jaspar.ids, jaspar.names))}
    return [row for cell_type, chosen in specific.items()
            for row in hypergeometric_rows("motif", cell_type, ids, chosen, terms)]
