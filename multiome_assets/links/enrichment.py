"""The `enrichment` table: what is over-represented among each cell type's specific cCREs (and the
genes they link to), one row per (kind, cell type, term).

- `regulon`: a prior regulon (TF -> targets of the dataset's prior) among the genes linked to the
  cell type's specific cCREs, against every gene linked in that cell type. Hypergeometric. Two
  selections of links (column `links`): `top 3 per gene` (the cCREs whose attention score ranks
  among a gene's top 3 in that cell type: the test uses the scores) and, as the control,
  `all in-window pairs` (every pair with attention > 0: "genes near the cCREs").
- `bed_overlap`: a user-supplied BED set (ChIP-seq peaks, say) overlapping the specific cCREs,
  against every scored cCRE. Hypergeometric, BH.
- `causal_variants`: fine-mapped variants on the specific cCREs: the mean posterior inclusion
  probability (PIP) of variants on them over that on the other scored cCREs (Cisformer's score);
  one-sided Mann–Whitney on the PIPs.
- `gwas_score`: Cisformer's GWAS score. Per trait (the variant file's `trait` column; one trait
  without it): the mean PIP of the trait's variants on the selected cCREs over the mean PIP of an
  equal number of the trait's variants drawn at random (its expectation: the trait's mean PIP),
  averaged over the traits with a variant on the selection. Selections (`links`): the top N cCREs
  by attention link score over all cells (N = 100, 500, 1000), and each cell type's top 100 by its
  own score. p: the same average over GWAS_DRAWS draws of random variants (as many per trait as
  fell on the selection), one-sided.
- `tf_attention`: the paper's check of a TF gene's top-attended cCREs (RNA→ATAC) against that TF's
  ChIP-seq peaks (ReMap), with the prior standing in for ChIP-seq: cCREs within 10 kb of the TF's
  prior targets' TSSs among its top-attended cCREs, against every linked cCRE. Hypergeometric.
- `motif`: a JASPAR motif in the specific cCREs' sequence against the other scored cCREs', when the
  dataset names a genome FASTA. Hypergeometric.
- `gene_class`: the paper's Fig. 3a comparison of chromatin remodelers, TFs and the other genes: is
  either class over-represented among the genes that draw the most attention in RNA→ATAC
  translation (each cell type's top 10% of `gene_link_scores`), against every scored gene?
  Remodelers: the catalytic ATPases of the four remodeler families (CHROMATIN_REMODELERS); TFs:
  the dataset's TF list. Hypergeometric.

Specific cCREs come from the summed attention scores (`celltype_specific_cres`); the BED, variant
and motif tests compare them with every scored cCRE (`links` = `specific cCREs`). FDR: Benjamini–
Hochberg over the whole table of a dataset (every kind, cell type, term and selection: one family).
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

COLUMNS = ["kind", "links", "cell_type", "term", "n_background", "n_term", "n_selected", "n_hits", "expected", "fold",
           "pvalue", "fdr"]
MIN_TERM = 3
TOP_LINKS_PER_GENE = 3
GWAS_TOP_N = (100, 500, 1000)
GWAS_TOP_PER_TYPE = 100
GWAS_DRAWS = 1000
SPECIFIC = "specific cCREs"
# GRCh38 primary chromosome lengths: a BED or variant beyond them is of another build
HG38 = {"chr1": 248956422, "chr2": 242193529, "chr3": 198295559, "chr4": 190214555, "chr5": 181538259,
        "chr6": 170805979, "chr7": 159345973, "chr8": 145138636, "chr9": 138394717, "chr10": 133797422,
        "chr11": 135086622, "chr12": 133275309, "chr13": 114364328, "chr14": 107043718, "chr15": 101991189,
        "chr16": 90338345, "chr17": 83257441, "chr18": 80373285, "chr19": 58617616, "chr20": 64444167,
        "chr21": 46709983, "chr22": 50818468, "chrX": 156040895, "chrY": 57227415, "chrM": 16569}


def hypergeometric_rows(kind: str, cell_type: str, background: np.ndarray, selected: np.ndarray,
                        terms: dict[str, np.ndarray]) -> list[dict]:
    """Rows for terms (name -> members) among `selected` out of `background` (arrays of ids). The
    background is hashed once and each term looked up in it (a 10x run: ~1,000 regulons × ~20,000
    linked genes per cell type, where sorting the background for every term took minutes)."""
    background = pd.Index(pd.unique(np.asarray(background)))
    is_chosen = np.zeros(len(background), dtype=bool)
    is_chosen[_positions(background, selected)] = True
    n_chosen = int(is_chosen.sum())
    rows = []
    for term, members in terms.items():
        in_bg = _positions(background, members)
        if len(in_bg) < MIN_TERM or not n_chosen:
            continue
        hits = int(is_chosen[in_bg].sum())
        expected = n_chosen * len(in_bg) / len(background)
        rows.append({"kind": kind, "cell_type": cell_type, "term": term, "n_background": len(background),
                     "n_term": len(in_bg), "n_selected": n_chosen, "n_hits": hits, "expected": expected,
                     "fold": hits / expected,
                     "pvalue": float(hypergeometric_sf(hits, len(background), len(in_bg), n_chosen))})
    return rows


def _positions(index: pd.Index, ids) -> np.ndarray:
    """Positions in `index` (unique) of the distinct `ids` it holds."""
    found = index.get_indexer(pd.unique(np.asarray(ids)))
    return found[found >= 0]


def with_fdr(rows: list[dict]) -> pd.DataFrame:
    """The rows as a table, BH-adjusted over every row (the family: the whole table)."""
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["links"] = table["links"].fillna(SPECIFIC)
    return table.assign(fdr=fdr_over_table(table.pvalue))


def fdr_over_table(pvalues: pd.Series) -> np.ndarray:
    """Benjamini–Hochberg over every finite p-value of a table (NaN where there is none)."""
    out = np.full(len(pvalues), np.nan)
    finite = np.isfinite(pvalues.to_numpy(dtype=np.float64))
    if finite.any():
        out[finite] = bh_fdr(pvalues.to_numpy(dtype=np.float64)[finite])
    return out


def specific_sets(specific: pd.DataFrame) -> dict[str, np.ndarray]:
    """Cell type -> its specific cCREs."""
    if specific.empty:
        return {}
    chosen = specific[specific.specific.astype(bool)]
    return {t: g.cre.to_numpy() for t, g in chosen.groupby("cell_type")}


def regulons(links: pd.DataFrame, specific: dict[str, np.ndarray], prior: pd.DataFrame) -> list[dict]:
    """`regulon` rows: genes linked (attention, that cell type) to its specific cCREs vs every gene
    it links; regulons from the prior's (tf, target) edges. Once with the links the scores select
    (each gene's top TOP_LINKS_PER_GENE cCREs), once with every in-window pair (the control)."""
    terms = {tf: g.target.to_numpy() for tf, g in prior.groupby("tf")}
    attention = links[links.method == "attention"]
    selections = {f"top {TOP_LINKS_PER_GENE} per gene": attention["rank"] <= TOP_LINKS_PER_GENE,
                  "all in-window pairs": pd.Series(True, index=attention.index)}
    rows = []
    for name, chosen in selections.items():
        for cell_type, cres in specific.items():
            typed = attention[chosen & (attention.cell_type == cell_type)]
            rows += [row | {"links": name} for row in hypergeometric_rows(
                "regulon", cell_type, typed.gene.to_numpy(), typed[typed.cre.isin(cres)].gene.unique(), terms)]
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
    """chrom, start, end (0-based, half-open: the one base), pip, trait (and ref, when the file has
    it) of a fine-mapped variant table (tab-separated, header with chrom, pos, pip and optionally
    trait and ref; without a trait every variant is of one trait named after the file). `pos` is
    1-based, as in VCF and fine-mapping output; it is converted here, once: the base at pos is
    [pos - 1, pos)."""
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
                             "end": pos.to_numpy(np.int64), "pip": pip.to_numpy(np.float64),
                             "trait": table.trait.astype(str).to_numpy() if "trait" in table else path.stem})
    if "ref" in table:
        variants["ref"] = table.ref.astype(str).str.upper().to_numpy()
    _check_build(path, variants, first_line=2, what="pos (1-based)")
    return variants


MIN_REF_MATCH = 0.9  # hg38 variants match their reference allele; another build's match by chance (~25% for SNVs)


def check_reference_alleles(path: Path, fasta: Path) -> float:
    """The fraction of the variant file's `ref` alleles that the genome FASTA holds at their
    positions; refused (naming the file, the fraction and the first line that differs) below
    MIN_REF_MATCH: the variants are of another genome build than the FASTA's (hg38). NaN when the
    file has no `ref` column."""
    variants = read_variants(path)
    if "ref" not in variants:
        return float("nan")
    genome = motifs.read_fasta(fasta, set(variants.chrom))
    refs = variants.ref.to_numpy().astype("S")  # fixed width: one byte column per allele position
    width = refs.dtype.itemsize
    letters = refs.view(np.uint8).reshape(len(refs), width)
    match = np.zeros(len(variants), dtype=bool)
    for chrom, rows in variants.groupby("chrom").indices.items():  # one array per chromosome, not per variant
        sequence = np.frombuffer(genome[chrom], dtype=np.uint8)
        at = np.minimum(variants.start.to_numpy()[rows, None] + np.arange(width), len(sequence) - 1)
        used = letters[rows] != 0  # the allele's own letters (shorter ones are padded with 0)
        match[rows] = ((sequence[at] == letters[rows]) | ~used).all(1)
    if match.mean() < MIN_REF_MATCH:
        i = int(np.argmax(~match))
        raise DatasetError(f"{path}: only {match.mean():.0%} of the ref alleles are the bases {fasta} holds at "
                           f"their positions (first at line {i + 2}: {variants.chrom.iloc[i]}:{variants.end.iloc[i]} "
                           f"ref {variants.ref.iloc[i]}): the variants are of another genome build than the FASTA (hg38)?")
    return float(match.mean())


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


# the catalytic ATPases of the four chromatin-remodeler families, SWI/SNF, ISWI, CHD and INO80
# (Clapier & Cairns 2009, Annu. Rev. Biochem. 78:273): the `gene_class` test's remodelers
CHROMATIN_REMODELERS = ("SMARCA2", "SMARCA4", "SMARCA1", "SMARCA5", "CHD1", "CHD2", "CHD3", "CHD4", "CHD5", "CHD6",
                        "CHD7", "CHD8", "CHD9", "INO80", "SRCAP", "EP400")
TOP_GENE_FRACTION = 0.1


def gene_classes(gene_scores: pd.DataFrame, tfs: list[str]) -> list[dict]:
    """`gene_class` rows: chromatin remodelers and TFs among each cell type's top TOP_GENE_FRACTION
    of genes by the attention they draw (`gene_link_scores`), against every gene scored there."""
    terms = {"chromatin remodelers": np.array(CHROMATIN_REMODELERS), "TFs": np.asarray(tfs, dtype=object)}
    selection = f"top {TOP_GENE_FRACTION:.0%} genes by attention"
    rows = []
    for cell_type, scored in gene_scores.groupby("cell_type"):
        top = scored.nlargest(int(np.ceil(TOP_GENE_FRACTION * len(scored))), "score").gene.to_numpy()
        rows += [row | {"links": selection} for row in hypergeometric_rows(
            "gene_class", cell_type, scored.gene.to_numpy(), top, terms)]
    return rows


TF_TARGET_WINDOW = 10_000  # bp either side of a prior target's TSS: where its regulator's sites may lie


def tf_attention_targets(tf_cres: pd.DataFrame, prior: pd.DataFrame, genes: pd.DataFrame,
                         background: pd.DataFrame) -> list[dict]:
    """`tf_attention` rows, the paper's ChIP-seq check with the prior standing in for ReMap (no
    ChIP-seq ships): per TF, are its top-attended cCREs (`tf_attention_cres`) enriched for cCREs
    within TF_TARGET_WINDOW bp of its prior targets' TSSs, against every linked cCRE?
    Hypergeometric; cell type `all`."""
    if tf_cres.empty or background.empty:
        return []
    tss = genes.dropna(subset=["tss"]).drop_duplicates("gene").set_index("gene")
    edges = prior[prior.target.isin(tss.index)]
    sites = pd.DataFrame({"tf": edges.tf.to_numpy(), "Chromosome": tss.chrom.reindex(edges.target).to_numpy(),
                          "Start": np.maximum(0, tss.tss.reindex(edges.target).to_numpy() - TF_TARGET_WINDOW),
                          "End": tss.tss.reindex(edges.target).to_numpy() + TF_TARGET_WINDOW})
    near = pr.PyRanges(pd.DataFrame({"Chromosome": background.chrom.to_numpy(), "Start": background.start.to_numpy(),
                                     "End": background.end.to_numpy(), "cre": background.cre.to_numpy()})
                       ).join(pr.PyRanges(sites)).df
    members = {tf: g.cre.unique() for tf, g in near.groupby("tf")} if not near.empty else {}
    rows = []
    for tf, top in tf_cres.groupby("tf"):
        if tf in members:
            rows += [row | {"links": "top attended cCREs"} for row in hypergeometric_rows(
                "tf_attention", "all", background.cre.to_numpy(), top.cre.to_numpy(), {tf: members[tf]})]
    return rows


def gwas_scores(cre_scores: pd.DataFrame, path: Path, seed: int = 0) -> list[dict]:
    """`gwas_score` rows (module docstring). `cre_scores`: per (cell_type, cre, chrom, start, end) the
    summed attention link score (`analysis.cre_link_scores`), `all` among the cell types."""
    variants = read_variants(path)
    cres = cre_scores[["cre", "chrom", "start", "end"]].drop_duplicates("cre")
    v = pr.PyRanges(pd.DataFrame({"Chromosome": variants.chrom, "Start": variants.start, "End": variants.end,
                                  "variant": np.arange(len(variants))}))
    c = pr.PyRanges(pd.DataFrame({"Chromosome": cres.chrom.to_numpy(), "Start": cres.start.to_numpy(),
                                  "End": cres.end.to_numpy(), "cre": cres.cre.to_numpy()}))
    on = v.join(c).df
    selections = []
    ranked_all = cre_scores[cre_scores.cell_type == "all"].sort_values("score", ascending=False).cre.to_numpy()
    selections += [("all", f"top {n} cCREs", ranked_all[:n]) for n in GWAS_TOP_N if len(ranked_all) >= n]
    for cell_type, group in cre_scores[cre_scores.cell_type != "all"].groupby("cell_type"):
        top = group.nlargest(GWAS_TOP_PER_TYPE, "score").cre.to_numpy()
        selections.append((cell_type, f"top {GWAS_TOP_PER_TYPE} cCREs of the cell type", top))
    rng = np.random.default_rng(seed)
    rows = []
    for cell_type, name, chosen in selections:
        hit = np.unique(on.variant.to_numpy()[on.cre.isin(chosen).to_numpy()])
        observed, null, n_traits = _trait_averaged_ratio(variants, hit, rng)
        if n_traits == 0:
            continue
        rows.append({"kind": "gwas_score", "links": name, "cell_type": cell_type,
                     "term": f"{Path(path).name}: {n_traits} traits", "n_background": len(variants),
                     "n_term": n_traits, "n_selected": len(chosen), "n_hits": len(hit), "expected": float(null.mean()),
                     "fold": observed, "pvalue": float((1 + (null >= observed).sum()) / (1 + len(null)))})
    return rows


def _trait_averaged_ratio(variants: pd.DataFrame, hit: np.ndarray, rng: np.random.Generator):
    """(score, GWAS_DRAWS null scores, traits averaged): per trait with variants in `hit`, their mean
    PIP over the trait's mean PIP, averaged; the null draws as many random variants per trait."""
    traits = variants.trait.to_numpy()
    ratios, nulls = [], []
    for trait in np.unique(traits[hit]) if len(hit) else []:
        members = np.flatnonzero(traits == trait)
        pip = variants.pip.to_numpy()[members]
        mean = pip.mean()
        if mean <= 0:
            continue
        k = int((traits[hit] == trait).sum())
        ratios.append(variants.pip.to_numpy()[hit][traits[hit] == trait].mean() / mean)
        draws = rng.integers(0, len(members), size=(GWAS_DRAWS, k))  # with replacement: no loop over draws
        nulls.append(pip[draws].mean(1) / mean)
    if not ratios:
        return np.nan, np.zeros(0), 0
    return float(np.mean(ratios)), np.mean(nulls, axis=0), len(ratios)


def motif_enrichment(cres: pd.DataFrame, specific: dict[str, np.ndarray], fasta: Path, motif_file: Path) -> list[dict]:
    """`motif` rows: each motif among each cell type's specific cCREs vs every scored cCRE."""
    jaspar, hits = motifs.scan(cres, fasta, motif_file)
    ids = cres.cre.to_numpy()
    terms = {f"{name} ({mid})": ids[hits[:, m]] for m, (mid, name) in enumerate(zip(jaspar.ids, jaspar.names))}
    return [row for cell_type, chosen in specific.items()
            for row in hypergeometric_rows("motif", cell_type, ids, chosen, terms)]
