"""TF → cCRE → gene triplets: a triplet needs all three pieces in its cell type, scores the geometric
mean of their percentiles, names its region chr-start-end; motif evidence comes from a FASTA the test
writes; triplet support lifts the pairs it supports in the evaluation's ranking."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from multiome_assets.dataset import load_spec, reference_path
from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.metrics import evaluate
from multiome_assets.links import motifs, pipeline, triplets

COLUMNS = ["method", "cell_type", "gene", "cre", "chrom", "start", "end", "distance", "score", "rank"]


def _links(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def _edges(rows):
    return pd.DataFrame(rows, columns=["context", "method", "tf", "target", "score"])


def test_a_triplet_needs_all_three_pieces_in_its_cell_type():
    edges = _edges([("B", "epiawarenet_bce", "PAX5", "CD19", 0.9), ("B", "epiawarenet_bce", "PAX5", "MS4A1", 0.1),
                    ("T", "epiawarenet_bce", "PAX5", "CD19", 0.8),
                    ("B", "grnboost2", "EBF1", "CD19", 5.0)])  # another method: never a triplet piece
    links = _links([("attention", "B", "CD19", "cCRE1", "chr16", 100, 300, 10, 0.5, 1),
                    ("attention", "B", "MS4A1", "cCRE2", "chr11", 500, 700, 20, 0.2, 1),
                    ("attention", "B", "CD19", "cCRE3", "chr16", 900, 999, 30, 0.1, 2),
                    ("attention", "NK", "CD19", "cCRE1", "chr16", 100, 300, 10, 0.5, 1),  # no NK edges
                    ("correlation", "all", "CD19", "cCRE1", "chr16", 100, 300, 10, 0.4, 1)])
    evidence = pd.DataFrame({"tf": ["PAX5", "PAX5", "EBF1"], "cre": ["cCRE1", "cCRE2", "cCRE1"],
                             "tf_cre_pct": [1.0, 0.5, 1.0], "tf_cre_evidence": "tf_attention"})
    table = triplets.tf_cre_gene(edges, links, evidence)
    assert list(zip(table.cell_type, table.source, table.cre_id, table.target)) == [
        ("B", "PAX5", "cCRE1", "CD19"), ("B", "PAX5", "cCRE2", "MS4A1")]  # cCRE3: no PAX5 evidence there
    first = table.iloc[0]
    assert first.cre == "chr16-100-300" and first.link_method == "attention"
    # percentiles: PAX5→CD19 is B's better edge of two (1.0); cCRE1's link the best of B's 3 kept (1.0)
    assert first.score == pytest.approx(1.0) and first["rank"] == 1
    second = table.iloc[1]
    assert second.score == pytest.approx(np.cbrt(0.5 * (2 / 3) * 0.5))


def test_only_each_genes_strongest_links_make_triplets():
    links = _links([("attention", "all", "G", f"cCRE{i}", "chr1", 10 * i, 10 * i + 5, i, 1 / (i + 1), i + 1)
                    for i in range(triplets.LINKS_PER_GENE + 3)])
    kept = triplets.strongest_links(links)
    assert len(kept) == triplets.LINKS_PER_GENE and kept["rank"].max() == triplets.LINKS_PER_GENE


def test_attention_evidence_scales_each_tfs_ranks():
    tf_cres = pd.DataFrame({"tf": ["A"] * 4 + ["B"] * 2, "cre": list("cdefgh"), "rank": [1, 2, 3, 4, 1, 2]})
    evidence = triplets.attention_evidence(tf_cres)
    assert evidence.tf_cre_pct.tolist() == [1, 0.75, 0.5, 0.25, 1, 0.5]


def test_jaspar_motif_names_give_their_tfs():
    assert triplets.motif_tfs("Ahr::Arnt") == ["AHR", "ARNT"]
    assert triplets.motif_tfs("FOS::JUN(var.2)") == ["FOS", "JUN"]
    assert triplets.motif_tfs("TFAP2A") == ["TFAP2A"]


def _planted_genome(tmp_path, word: str, cres: pd.DataFrame, planted: range) -> str:
    rng = np.random.default_rng(0)
    sequence = np.array(list("ACGT"))[rng.integers(0, 4, int(cres.end.max()) + 1000)]
    for k in planted:
        sequence[cres.start[k] + 40:cres.start[k] + 40 + len(word)] = list(word)
    text = "".join(sequence)
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chr1\n" + "\n".join(text[j:j + 60] for j in range(0, len(text), 60)) + "\n")
    return fasta


def _consensus(name: str) -> str:
    jaspar = motifs.read_meme(reference_path("jaspar2024"))
    i = jaspar.names.index(name)
    return "".join("ACGT"[j] for j in jaspar.log_odds[i, :, :jaspar.widths[i]].argmax(0).tolist())


def test_motif_evidence_finds_the_tf_planted_in_a_written_genome(tmp_path):
    cres = pd.DataFrame({"cre": [f"cCRE{k}" for k in range(20)], "chrom": "chr1",
                         "start": np.arange(20) * 900 + 100, "end": np.arange(20) * 900 + 300})
    fasta = _planted_genome(tmp_path, _consensus("TFAP2A"), cres, range(5))
    evidence = triplets.motif_evidence(cres, fasta, reference_path("jaspar2024"), ["TFAP2A", "PAX5"])
    tfap2a = set(evidence[evidence.tf == "TFAP2A"].cre)
    assert {f"cCRE{k}" for k in range(5)} <= tfap2a and len(tfap2a) < 10
    assert set(evidence.tf) <= {"TFAP2A", "PAX5"} and (evidence.tf_cre_evidence == "motif").all()


def test_a_dataset_naming_a_genome_gets_motif_triplets_beside_attention_ones(tmp_path):
    """The asset's path: with `genome_fasta` in dataset.yaml, the TF's motifs in the linked cCREs
    are evidence too, and make triplets of their own (`tf_cre_evidence` = 'motif')."""
    links = _links([("attention", "all", "GENE1", f"cCRE{k}", "chr1", 900 * k + 100, 900 * k + 300, 10, 1 / (k + 1), 1)
                    for k in range(8)])
    links["gene"] = [f"G{k}" for k in range(8)]
    cres = links[["cre", "chrom", "start", "end"]].reset_index(drop=True)
    fasta = _planted_genome(tmp_path, _consensus("TFAP2A"), cres, range(3))
    spec = replace(load_spec("bmmc_starter"), genome_fasta=fasta)
    tf_cres = pd.DataFrame({"tf": "PAX5", "cre": ["cCRE7"], "rank": [1]})
    evidence = pipeline.tf_cre_evidence(tf_cres, links, spec)
    assert set(evidence.tf_cre_evidence) == {"tf_attention", "motif"}
    assert {"cCRE0", "cCRE1", "cCRE2"} <= set(evidence[evidence.tf == "TFAP2A"].cre)
    edges = _edges([("all", "epiawarenet_bce", "TFAP2A", f"G{k}", 1.0 - k / 10) for k in range(8)]
                   + [("all", "epiawarenet_bce", "PAX5", "G7", 0.5)])
    table = triplets.tf_cre_gene(edges, links, evidence)
    motif = table[table.tf_cre_evidence == "motif"]
    assert {"G0", "G1", "G2"} <= set(motif[motif.source == "TFAP2A"].target)
    assert table[table.tf_cre_evidence == "tf_attention"][["source", "target"]].values.tolist() == [["PAX5", "G7"]]


def _space(rng, R=20, G=200):
    genes = np.array([f"g{i}" for i in range(G)], dtype=object)
    regulators = genes[:R]
    flat = rng.choice(R * G, size=600, replace=False)
    edges = pd.DataFrame({"tf": regulators[flat // G], "target": genes[flat % G]})
    edges = edges[edges.tf != edges.target]
    train, test = edges.iloc[:300], edges.iloc[300:]
    return EdgeSpace.from_edges(regulators, genes, train, test), test


def test_triplet_support_lifts_the_pairs_it_supports():
    rng = np.random.default_rng(0)
    space, test = _space(rng)
    head = rng.random(space.shape)  # a head at chance
    # one cCRE per held-out edge's target, the TF's evidence in it: every held-out edge gets a triplet
    supported = test.iloc[:150]
    links = pd.DataFrame({"gene": supported.target.to_numpy(), "cre": [f"c{i}" for i in range(len(supported))],
                          "link_pct": 0.5})
    evidence = pd.DataFrame({"tf": supported.tf.to_numpy(), "cre": links.cre, "tf_cre_pct": 1.0})
    scores, n = triplets.triplet_edge_scores(head, links, evidence, space.regulators, space.genes)
    assert n == len(supported.drop_duplicates())
    r, g = pd.Index(space.regulators).get_indexer(supported.tf), pd.Index(space.genes).get_indexer(supported.target)
    assert scores[r, g].min() > 1 >= np.delete(scores.ravel(), r * space.shape[1] + g).max()
    assert evaluate(scores, space, n_random=0)["auroc"] > evaluate(head, space, n_random=0)["auroc"] + 0.2


def test_evidence_distance_prefers_a_nearby_cre():
    pairs = pd.DataFrame({"gene": ["g1", "g1", "g2"], "cre": ["near", "far", "far"], "distance": [0, 200_000, 200_000]})
    evidence = pd.DataFrame({"tf": ["t", "t", "u"], "cre": ["near", "far", "near"], "tf_cre_pct": [0.5, 1.0, 1.0]})
    scores = triplets.evidence_distance_scores(pairs, evidence, 250_000, np.array(["t", "u"]), np.array(["g1", "g2", "g3"]))
    assert scores[0, 0] == pytest.approx(max(0.5, 1.0 * (1 - 200_000 / 250_001)))
    assert scores[0, 1] == pytest.approx(1 - 200_000 / 250_001)
    assert scores[1, 0] == pytest.approx(1.0) and scores[1, 1] == 0 and scores[:, 2].max() == 0
