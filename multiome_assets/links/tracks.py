"""CRE–gene links as genome-browser tracks: BEDPE (IGV, 10x Loupe, HiGlass) and UCSC `interact`.

Each link joins two anchors, both 0-based half-open as every BED-family format: the cCRE as the
vocabulary holds it, and the gene's TSS base. The annotation's TSS is 1-based (Ensembl), so its
base is [tss - 1, tss).

- BEDPE columns: chrom1 start1 end1 chrom2 start2 end2 name score strand1 strand2, then the link's
  method, cell type, gene and distance (IGV reads the first ten and shows the rest). `name` is
  `gene|cCRE`; `score` is the link score as the table holds it (attention: a rank score in [0, 1];
  correlation: Pearson r).
- UCSC interact (bed5+13, `track type=interact`): chromStart/chromEnd span both anchors, `score` is
  an integer 0-1000 (the link score over the file's largest), `value` the score itself; source =
  the cCRE, target = the TSS. Links whose anchors lie on different chromosomes do not exist here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from multiome_assets.files import atomic_path

BEDPE_COLUMNS = ["chrom1", "start1", "end1", "chrom2", "start2", "end2", "name", "score", "strand1", "strand2"]
INTERACT_COLUMNS = ["chrom", "chromStart", "chromEnd", "name", "score", "value", "exp", "color",
                    "sourceChrom", "sourceStart", "sourceEnd", "sourceName", "sourceStrand",
                    "targetChrom", "targetStart", "targetEnd", "targetName", "targetStrand"]


def link_tracks(links: pd.DataFrame, genes: pd.DataFrame) -> pd.DataFrame:
    """The `link_tracks` table: every link of `cre_gene_links` as a BEDPE row, with its method and
    cell type. `genes`: `gene_annotation` (gene, chrom, tss, strand)."""
    tss = genes.dropna(subset=["tss"]).drop_duplicates("gene").set_index("gene")
    placed = links[links.gene.isin(tss.index)]
    at = tss.loc[placed.gene]
    table = pd.DataFrame({
        "chrom1": placed.chrom.to_numpy(), "start1": placed.start.to_numpy(np.int64),
        "end1": placed.end.to_numpy(np.int64),
        "chrom2": at.chrom.astype(str).to_numpy(), "start2": at.tss.to_numpy(np.int64) - 1,
        "end2": at.tss.to_numpy(np.int64),
        "name": (placed.gene + "|" + placed.cre).to_numpy(), "score": placed.score.to_numpy(np.float64),
        "strand1": ".", "strand2": at.strand.astype(str).to_numpy(),
        "method": placed.method.to_numpy(), "cell_type": placed.cell_type.to_numpy(),
        "gene": placed.gene.to_numpy(), "distance": placed.distance.to_numpy()})
    return table.sort_values(["method", "cell_type", "chrom1", "start1", "start2"], ignore_index=True)


def interact(tracks: pd.DataFrame) -> pd.DataFrame:
    """BEDPE rows (of one method and cell type) as UCSC interact rows."""
    top = tracks.score.abs().max() if len(tracks) else 1.0
    scaled = np.rint(1000 * tracks.score.abs() / (top or 1.0)).astype(np.int64)
    return pd.DataFrame({
        "chrom": tracks.chrom1, "chromStart": np.minimum(tracks.start1, tracks.start2),
        "chromEnd": np.maximum(tracks.end1, tracks.end2), "name": tracks.name, "score": scaled,
        "value": tracks.score, "exp": tracks.cell_type, "color": "0",
        "sourceChrom": tracks.chrom1, "sourceStart": tracks.start1, "sourceEnd": tracks.end1,
        "sourceName": tracks.name.str.split("|").str[1], "sourceStrand": ".",
        "targetChrom": tracks.chrom2, "targetStart": tracks.start2, "targetEnd": tracks.end2,
        "targetName": tracks.gene, "targetStrand": tracks.strand2})[INTERACT_COLUMNS]


def write_tracks(tracks: pd.DataFrame, folder, dataset: str, fmt: str) -> list:
    """One file per (method, cell type) in `folder`: `<dataset>.<method>.<cell type>.bedpe` or
    `.interact.bed` (with its track line). Returns the paths written."""
    folder = Path(folder)
    written = []
    for (method, cell_type), part in tracks.groupby(["method", "cell_type"], sort=True):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(cell_type))
        if fmt == "bedpe":
            path, body, header = folder / f"{dataset}.{method}.{safe}.bedpe", part, ""
        else:
            path, body = folder / f"{dataset}.{method}.{safe}.interact.bed", interact(part)
            header = (f'track type=interact name="{dataset} {method} {cell_type}" '
                      f'description="cCRE-gene links ({method}, {cell_type})" interactDirectional=true\n')
        with atomic_path(path) as tmp:
            with open(tmp, "w") as f:
                f.write(header)
                body.to_csv(f, sep="\t", header=False, index=False)
        written.append(path)
    return written
