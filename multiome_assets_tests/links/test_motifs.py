"""Motif scanning finds motifs planted in a FASTA the test writes, on both strands; a bad FASTA is
refused naming the file and the line or the chromosome."""
import numpy as np
import pandas as pd
import pytest

from multiome_assets.dataset import DatasetError, reference_path
from multiome_assets.links import motifs

COMPLEMENT = str.maketrans("ACGT", "TGCA")


@pytest.fixture(scope="module")
def jaspar():
    return motifs.read_meme(reference_path("jaspar2024"))


def _consensus(m: motifs.Motifs, i: int) -> str:
    return "".join("ACGT"[j] for j in m.log_odds[i, :, :m.widths[i]].argmax(0).tolist())


def _genome(tmp_path, planted: dict[int, str], length=30_000, seed=0):
    rng = np.random.default_rng(seed)
    seq = np.array(list("ACGT"))[rng.integers(0, 4, length)]
    for at, word in planted.items():
        seq[at:at + len(word)] = list(word)
    text = "".join(seq)
    path = tmp_path / "genome.fa"
    path.write_text(">chr1 test\n" + "\n".join(text[i:i + 60] for i in range(0, len(text), 60)) + "\n")
    return path


def test_planted_motifs_are_found_on_both_strands(tmp_path, jaspar):
    assert len(jaspar.ids) == 879 and "TFAP2A" in jaspar.names
    i = jaspar.names.index("TFAP2A")
    word = _consensus(jaspar, i)
    cres = pd.DataFrame({"chrom": "chr1", "start": np.arange(40) * 600 + 100, "end": np.arange(40) * 600 + 300})
    planted = {int(cres.start[k]) + 50: word for k in range(10)}
    planted |= {int(cres.start[k]) + 120: word.translate(COMPLEMENT)[::-1] for k in range(10, 20)}
    planted[int(cres.start[30]) - 5] = word  # straddles a cCRE's start: not inside it
    genome = motifs.read_fasta(_genome(tmp_path, planted), {"chr1"})
    sequences, lengths = motifs.one_hot(genome, cres)
    hits = motifs.motif_hits(jaspar, sequences, lengths)
    assert hits[:20, i].all()  # forward and reverse-complement instances
    assert not hits[30, i]
    # a random 200 bp sequence holds it with probability ~ 2 strands x 192 windows x 1e-4
    assert hits[20:, i].mean() < 0.2


def test_the_threshold_is_the_exact_tail_of_random_windows():
    rng = np.random.default_rng(0)
    log_odds = rng.normal(size=(4, 4))
    threshold = motifs.score_threshold(log_odds, 0.05)
    # all 256 words: P(score >= threshold) <= 0.05 and just below the threshold more than 0.05
    words = np.array(np.meshgrid(*[range(4)] * 4)).reshape(4, -1).T
    scores = log_odds[np.arange(4), words].sum(1)
    assert (scores >= threshold - 1e-9).mean() <= 0.05 + 1e-3
    assert (scores >= threshold - 0.05).mean() > 0.05


def test_fasta_problems_name_the_file_and_the_line_or_chromosome(tmp_path):
    path = _genome(tmp_path, {})
    with pytest.raises(DatasetError, match="lacks chromosome\\(s\\) chr2"):
        motifs.read_fasta(path, {"chr1", "chr2"})
    bad = tmp_path / "bad.fa"
    bad.write_text(">chr1\nACGTACGT\nACGT!!ACGT\n")
    with pytest.raises(DatasetError, match=f"{bad}, line 3: not FASTA sequence"):
        motifs.read_fasta(bad, {"chr1"})
    genome = motifs.read_fasta(path, {"chr1"})
    with pytest.raises(DatasetError, match="another genome build"):
        motifs.one_hot(genome, pd.DataFrame({"chrom": ["chr1"], "start": [29_900], "end": [30_100]}))
    with pytest.raises(DatasetError, match="does not exist"):
        motifs.read_fasta(tmp_path / "none.fa", {"chr1"})


def test_motif_enrichment_puts_the_planted_motif_first(tmp_path, jaspar):
    from multiome_assets.links import enrichment

    i = jaspar.names.index("TFAP2A")
    word = _consensus(jaspar, i)
    cres = pd.DataFrame({"cre": [f"c{k}" for k in range(40)], "chrom": "chr1", "start": np.arange(40) * 600 + 100,
                         "end": np.arange(40) * 600 + 300})
    fasta = _genome(tmp_path, {int(cres.start[k]) + 60: word for k in range(8)})
    specific = {"T1": cres.cre.to_numpy()[:10]}  # 8 of its 10 cCREs hold the motif
    table = enrichment.with_fdr(enrichment.motif_enrichment(cres, specific, fasta, reference_path("jaspar2024")))
    best = table.sort_values("pvalue").iloc[0]
    assert best.term == f"TFAP2A ({jaspar.ids[i]})" and best.n_hits >= 8 and best.fdr < 0.05
