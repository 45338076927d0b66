"""Links as genome-browser tracks: BEDPE as IGV reads it, UCSC interact, and the export command."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from multiome_assets import warehouse
from multiome_assets.cli import main as cli
from multiome_assets.links import tracks

LINKS = pd.DataFrame({
    "method": ["attention", "attention", "correlation"], "cell_type": ["all", "B cell", "all"],
    "gene": ["CD74", "CD74", "MS4A1"], "cre": ["cCRE7", "cCRE8", "cCRE9"], "chrom": "chr5",
    "start": [150_400_000, 150_420_000, 60_100_000], "end": [150_400_350, 150_420_200, 60_100_300],
    "distance": [12_000, 3_000, 500], "score": [0.9, 0.4, -0.25], "rank": [1, 1, 1]})
GENES = pd.DataFrame({"gene": ["CD74", "MS4A1", "NOTSSGENE"], "chrom": ["chr5", "chr5", None],
                      "tss": [150_412_929, 60_100_800, None], "strand": ["-", "+", None]})


def test_bedpe_rows_follow_igvs_rules():
    table = tracks.link_tracks(LINKS, GENES)
    assert list(table.columns[:10]) == tracks.BEDPE_COLUMNS and len(table) == 3
    assert (table.start1 < table.end1).all() and (table.start2 < table.end2).all()
    # the TSS anchor is the TSS's base, 0-based: the annotation's 1-based 150,412,929 is [150,412,928, 150,412,929)
    cd74 = table[table.name == "CD74|cCRE7"].iloc[0]
    assert (cd74.chrom2, cd74.start2, cd74.end2, cd74.strand2) == ("chr5", 150_412_928, 150_412_929, "-")
    assert (cd74.start1, cd74.end1) == (150_400_000, 150_400_350)  # the cCRE as the BED vocabulary holds it
    assert np.issubdtype(table.score.dtype, np.floating)
    assert table.set_index("name").score.to_dict() == {"CD74|cCRE7": 0.9, "CD74|cCRE8": 0.4, "MS4A1|cCRE9": -0.25}


def test_interact_rows_span_both_anchors_with_an_integer_score():
    rows = tracks.interact(tracks.link_tracks(LINKS, GENES))
    assert list(rows.columns) == tracks.INTERACT_COLUMNS
    assert (rows.chromStart <= rows[["sourceStart", "targetStart"]].min(axis=1)).all()
    assert (rows.chromEnd >= rows[["sourceEnd", "targetEnd"]].max(axis=1)).all()
    assert rows.score.between(0, 1000).all() and rows.score.max() == 1000 and rows.score.dtype.kind == "i"


@pytest.mark.parametrize("fmt, suffix", [("bedpe", ".bedpe"), ("interact", ".interact.bed")])
def test_export_writes_a_file_per_method_and_cell_type(data_root, tmp_path, fmt, suffix):
    warehouse.write_table("link_tracks", "bmmc_starter", tracks.link_tracks(LINKS, GENES))
    out = tmp_path / "tracks"
    got = CliRunner().invoke(cli, ["export", "links", "--dataset", "bmmc_starter", "--format", fmt, "--out", str(out)])
    assert got.exit_code == 0, got.output
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"bmmc_starter.{m}.{c}{suffix}" for m, c in
                           (("attention", "all"), ("attention", "B_cell"), ("correlation", "all")))
    lines = (out / f"bmmc_starter.attention.all{suffix}").read_text().splitlines()
    body = [line.split("\t") for line in lines if not line.startswith("track")]
    assert len(body) == 1 and len(body[0]) == (14 if fmt == "bedpe" else 18)
    if fmt == "interact":
        assert lines[0].startswith("track type=interact")
    missing = CliRunner().invoke(cli, ["export", "links", "--dataset", "bmmc_starter", "--cell-type", "T cell"])
    assert missing.exit_code == 1 and "no links for cell type(s) ['T cell']" in missing.output
