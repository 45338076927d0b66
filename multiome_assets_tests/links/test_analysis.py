"""Cell-type-specific cCREs by the 5-rank rule, the distance-matched decoys, and the enrichment
statistics against hand-computed cases; BED and variant files refused naming the file and line."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from multiome_assets.dataset import DatasetError
from multiome_assets.links import analysis, enrichment


def test_the_five_rank_rule_on_a_hand_made_matrix():
    #            T1    T2    T3
    scores = {"a": (10.0, 0.0, 1.0),   # scaled 1, -1, -0.8  -> ranks 5, 1, 1: specific to T1
              "b": (5.0, 4.9, 0.0),    # scaled 1, 0.96, -1 -> ranks 5, 5, 1: two top types, specific to none
              "c": (2.0, 2.0, 2.0),    # the same everywhere: no rank
              "d": (0.0, 3.0, 6.0)}    # scaled -1, 0, 1    -> ranks 1, 3, 5: specific to T3
    table = pd.DataFrame([(cre, f"T{i + 1}", s) for cre, row in scores.items() for i, s in enumerate(row)],
                         columns=["cre", "cell_type", "score"])
    out = analysis.celltype_specific(table).set_index(["cre", "cell_type"])
    assert out.loc[("a", "T1"), "rank"] == 5 and out.loc[("a", "T2"), "rank"] == 1
    assert out.loc[("d", "T2"), "rank"] == 3 and out.loc[("d", "T2"), "scaled_score"] == pytest.approx(0.0)
    assert "c" not in out.index.get_level_values(0)
    specific = out[out.specific].index.tolist()
    assert specific == [("a", "T1"), ("d", "T3")]


def test_decoys_come_from_the_chosen_pairs_distance_decile_whatever_their_rank_order():
    distance = np.random.default_rng(0).integers(0, 250_000, 5000)
    nearest, farthest = np.argsort(distance)[:50], np.argsort(distance)[-50:]
    chosen = np.r_[nearest, farthest]
    decoys = analysis.distance_matched(distance, chosen, np.random.default_rng(1))
    assert decoys.shape == (100, analysis.DECOYS_PER_PAIR)
    assert not np.isin(decoys, chosen).any()
    assert distance[decoys[:50]].max() <= np.quantile(distance, 0.1) + 1
    assert distance[decoys[50:]].min() >= np.quantile(distance, 0.9) - 1
    # the same pairs ranked otherwise: each keeps its decoys (a near-tie that swaps moves nothing)
    shuffled = np.random.default_rng(2).permutation(100)
    again = analysis.distance_matched(distance, chosen[shuffled], np.random.default_rng(1))
    np.testing.assert_array_equal(again, decoys[shuffled])


def test_hypergeometric_rows_against_a_hand_computed_case():
    background = np.array([f"g{i}" for i in range(20)])
    selected = background[:5]
    terms = {"TF1": np.array(["g0", "g1", "g2", "g10"]), "tiny": np.array(["g0", "g1"])}
    (row,) = enrichment.hypergeometric_rows("regulon", "T1", background, selected, terms)  # "tiny": < 3 members
    # 3 of the 5 selected are among TF1's 4 targets, out of 20 genes
    assert (row["n_hits"], row["n_term"], row["n_selected"], row["n_background"]) == (3, 4, 5, 20)
    assert row["expected"] == pytest.approx(5 * 4 / 20)
    assert row["pvalue"] == pytest.approx(stats.hypergeom.sf(2, 20, 4, 5))
    # repeated ids count once; ids outside the background are not counted
    again = enrichment.hypergeometric_rows("regulon", "T1", np.r_[background, background[:3]],
                                           np.r_[selected, selected[:2], ["x"]], {"TF1": np.r_[terms["TF1"], ["g0", "y"]]})
    assert again == [row]


def test_pip_ratio_against_a_hand_computed_case(tmp_path):
    cres = pd.DataFrame({"cre": ["x", "y", "z"], "chrom": "chr1", "start": [100, 1000, 5000], "end": [200, 1100, 5100]})
    variants = tmp_path / "finemap.tsv"
    variants.write_text("chrom\tpos\tpip\nchr1\t150\t0.9\nchr1\t160\t0.5\nchr1\t1050\t0.1\nchr1\t5050\t0.2\nchr1\t9000\t1.0\n")
    (row,) = enrichment.causal_variants(cres, {"T1": np.array(["x"])}, variants)
    # on x: 0.9, 0.5 (mean 0.7); on the other cCREs: 0.1, 0.2 (mean 0.15); the variant at 9000 is on none
    assert row["fold"] == pytest.approx(0.7 / 0.15)
    assert (row["n_hits"], row["n_background"]) == (2, 4)


def test_variant_positions_are_one_based_at_both_ends_of_a_cre(tmp_path):
    """A cCRE [100, 200) in BED holds the 1-based bases 101..200: a variant on its last base (200) is
    on it, one a base before its start (100) is not."""
    cres = pd.DataFrame({"cre": ["x", "y"], "chrom": "chr1", "start": [100, 5000], "end": [200, 5100]})
    variants = tmp_path / "finemap.tsv"
    variants.write_text("chrom\tpos\tpip\nchr1\t100\t0.9\nchr1\t101\t0.4\nchr1\t200\t0.6\nchr1\t201\t0.8\n"
                        "chr1\t5050\t0.1\n")
    read = enrichment.read_variants(variants)
    assert read[["start", "end"]].values.tolist()[:2] == [[99, 100], [100, 101]]  # the base at pos: [pos - 1, pos)
    (row,) = enrichment.causal_variants(cres, {"T1": np.array(["x"])}, variants)
    assert row["n_hits"] == 2 and row["fold"] == pytest.approx(((0.4 + 0.6) / 2) / 0.1)  # 101 and 200; not 100, 201


def test_a_variant_file_of_another_build_is_refused(tmp_path):
    path = tmp_path / "hg19.tsv"  # chr1:249,200,000 exists on hg19 (249,250,621 bp), not on hg38 (248,956,422)
    path.write_text("chrom\tpos\tpip\nchr1\t1000\t0.5\nchr1\t249200000\t0.5\n")
    with pytest.raises(DatasetError, match=rf"{path}, line 3: chr1 pos \(1-based\) 249,200,000 lies beyond hg38"):
        enrichment.read_variants(path)
    path.write_text("chrom\tpos\tpip\n1\t1000\t0.5\n")  # Ensembl naming
    with pytest.raises(DatasetError, match="line 2: 1 pos .* is not an hg38 chromosome name"):
        enrichment.read_variants(path)


def test_reference_alleles_catch_a_file_of_another_build_within_hg38s_lengths(tmp_path):
    """With a genome FASTA, the `ref` column is checked against the bases at the 1-based positions:
    a file of another build (here: every position shifted, as liftover would) is refused."""
    rng = np.random.default_rng(0)
    genome = "".join(np.array(list("ACGT"))[rng.integers(0, 4, 5000)])
    fasta = tmp_path / "genome.fa"
    fasta.write_text(">chr1\n" + "\n".join(genome[i:i + 60] for i in range(0, len(genome), 60)) + "\n")
    pos = np.arange(1, 4000, 37)
    refs = [genome[p - 1] if k % 10 else genome[p - 1:p + 2] for k, p in enumerate(pos)]  # SNVs and 3-base refs
    path = tmp_path / "finemap.tsv"
    path.write_text("chrom\tpos\tpip\tref\n" + "".join(f"chr1\t{p}\t0.5\t{r}\n" for p, r in zip(pos, refs)))
    assert enrichment.check_reference_alleles(path, fasta) == 1.0
    shifted = tmp_path / "other_build.tsv"
    shifted.write_text("chrom\tpos\tpip\tref\n" + "".join(f"chr1\t{p + 500}\t0.5\t{r}\n" for p, r in zip(pos, refs)))
    with pytest.raises(DatasetError, match=rf"{shifted}: only \d+% of the ref alleles .* another genome build"):
        enrichment.check_reference_alleles(shifted, fasta)
    path.write_text("chrom\tpos\tpip\nchr1\t10\t0.5\n")  # no ref column: nothing to check
    assert np.isnan(enrichment.check_reference_alleles(path, fasta))


def test_bed_overlap_counts_cres_touching_the_regions(tmp_path):
    cres = pd.DataFrame({"cre": list("abcdef"), "chrom": "chr2", "start": np.arange(6) * 1000,
                         "end": np.arange(6) * 1000 + 200})
    bed = tmp_path / "chip.bed"
    bed.write_text("track name=chip\nchr2\t150\t160\nchr2\t1100\t1300\nchr2\t2199\t2300\nchr2\t5300\t5400\n")
    (row,) = enrichment.bed_overlaps(cres, {"T1": np.array(["a", "b", "f"])}, {"chip": bed})
    assert (row["n_term"], row["n_hits"]) == (3, 2)  # a, b, c overlap; a and b are selected


@pytest.mark.parametrize("content, problem", [
    ("chr1\t100\n", r"line 1: not BED"),
    ("chr1\t100\t200\n1\t5\t10\n", r"line 2: chromosome '1' is not an hg38 name"),
    ("chr21\t46709000\t46800000\n", r"line 1: chr21:46709000-46800000 is not within hg38's chr21"),
])
def test_a_bad_bed_is_refused_naming_the_line(tmp_path, content, problem):
    bed = tmp_path / "x.bed"
    bed.write_text(content)
    with pytest.raises(DatasetError, match=f"{bed}, " + problem):
        enrichment.read_bed(bed)


def test_a_bad_variant_file_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "v.tsv"
    path.write_text("chrom\tpos\tpip\nchr1\t100\t0.5\nchr1\t200\t1.5\n")
    with pytest.raises(DatasetError, match=f"{path}, line 3: pip 1.5 is not a probability"):
        enrichment.read_variants(path)
    path.write_text("chrom\tposition\tpip\n")
    with pytest.raises(DatasetError, match=r"lacks \['pos'\]"):
        enrichment.read_variants(path)


def test_a_dataset_without_cell_types_gets_scores_for_one_set_and_no_specific_cres():
    from multiome_assets.dataset import DatasetSpec
    from multiome_assets.links import pipeline

    links = pd.DataFrame({"method": "attention", "cell_type": "all", "gene": ["G1", "G1", "G2"],
                          "cre": ["a", "b", "a"], "chrom": "chr1", "start": [0, 500, 0], "end": [100, 600, 100],
                          "distance": [10, 400, 20], "score": [0.5, 0.2, 0.4], "rank": [1, 2, 1]})
    scores = pipeline.cre_link_scores(links)
    assert scores.set_index("cre").score.to_dict() == {"a": pytest.approx(0.9), "b": pytest.approx(0.2)}
    specific = pipeline.celltype_specific_cres(scores)
    assert specific.empty
    spec = DatasetSpec(key="x", folder=None, format="h5ad_pair", files={})
    no_tf_cres = pd.DataFrame(columns=["tf", "cre", "chrom", "start", "end", "attention", "rank"])
    genes = pd.DataFrame({"gene": ["G1", "G2"], "chrom": "chr1", "tss": [50, 5000]})
    no_gene_scores = pd.DataFrame(columns=["cell_type", "gene", "score"])
    table = pipeline.enrichment_table(links, specific, pd.DataFrame({"tf": ["T"], "target": ["G1"]}), no_tf_cres,
                                      no_gene_scores, genes, spec)
    assert table.empty and list(table.columns) == enrichment.COLUMNS


def test_links_learn_from_the_translators_cells_and_are_validated_on_its_test_cells():
    """The held-out split of link_validation: the `random` scenario's test cells, disjoint from the
    cells the correlation links and the translator learned from, together every cell."""
    from multiome_assets.links.pipeline import seen_and_held_out
    from multiome_assets.translation.splits import translation_splits

    obs = pd.DataFrame({"cell_type": np.repeat(["B", "T", "NK", "Mono"], 50)}, index=[f"c{i}" for i in range(200)])
    splits = translation_splits(obs, batch_column=None, cell_type_column="cell_type", seed=0)
    seen, held_out = seen_and_held_out(splits, obs.index)
    assert len(np.intersect1d(seen, held_out)) == 0 and len(seen) + len(held_out) == 200
    random_test = splits[(splits.scenario == "random") & (splits.role == "test")].cell
    assert set(obs.index[held_out]) == set(random_test)


def test_the_links_read_the_profiles_cells_per_set():
    """`cpu`: 100 cells of `all` (what link_validation reads) and 50 of each cell type; the paper
    profile 100 of each; a type smaller than its budget is read whole."""
    from multiome_assets.links.pipeline import link_cell_sets
    from multiome_assets.translation.train import training_config

    labels = np.repeat(["B", "T", "NK"], [300, 80, 20])
    for profile, per_type in (("cpu", 50), ("paper", 100)):
        sets = link_cell_sets(labels, len(labels), training_config("atac2rna", profile, 0))
        assert {k: len(v) for k, v in sets.items()} == {"all": 100, "B": per_type, "T": min(per_type, 80), "NK": 20}
        assert all((labels[v] == k).all() for k, v in sets.items() if k != "all")
        assert training_config("rna2atac", profile, 0).max_link_cells_per_type == training_config(
            "atac2rna", profile, 0).max_link_cells_per_type  # gene_link_scores reads the same sets


def test_remodelers_and_tfs_are_tested_among_the_most_attended_genes_of_each_cell_type():
    """The paper's Fig. 3a classes: the top 10% of genes by attention drawn, per cell type, against
    every gene scored there."""
    others = [f"G{i}" for i in range(94)]
    genes = ["SMARCA4", "CHD4", "INO80", "SPI1", "GATA1", "PAX5"] + others
    # B: the remodelers and one TF draw the most attention; T: the order reversed
    score_b = np.r_[[10, 9, 8, 7, 0, 0], np.linspace(6, 0, 94)]
    scores = pd.concat([pd.DataFrame({"cell_type": t, "gene": genes, "score": s})
                        for t, s in (("B", score_b), ("T", -score_b))])
    rows = pd.DataFrame(enrichment.gene_classes(scores, ["SPI1", "GATA1", "PAX5", "NOTATF"]))
    assert set(rows.kind) == {"gene_class"} and set(rows["links"]) == {"top 10% genes by attention"}
    b = rows[rows.cell_type == "B"].set_index("term")
    assert b.loc["chromatin remodelers", ["n_background", "n_term", "n_selected", "n_hits"]].tolist() == [100, 3, 10, 3]
    assert b.loc["TFs", ["n_term", "n_hits"]].tolist() == [3, 1]  # a TF absent from the scored genes is not counted
    assert b.loc["chromatin remodelers", "pvalue"] < 0.01 < b.loc["TFs", "pvalue"]
    assert rows[rows.cell_type == "T"].set_index("term").loc["chromatin remodelers", "n_hits"] == 0


def test_the_fdr_family_is_the_whole_table():
    rows = [{"kind": k, "cell_type": t, "term": "x", "pvalue": p}
            for k, t, p in (("regulon", "B", 0.01), ("regulon", "T", 0.02), ("bed_overlap", "B", 0.03),
                            ("causal_variants", "B", 0.5))]
    table = enrichment.with_fdr(rows)
    np.testing.assert_allclose(table.fdr, [0.04, 0.04, 0.04, 0.5])  # BH over four tests, not per kind
    assert set(table["links"]) == {"specific cCREs"}
    assert np.isnan(enrichment.fdr_over_table(pd.Series([np.nan, 0.2]))[0])


def test_regulons_are_tested_on_the_links_the_scores_select_and_on_every_pair():
    links = pd.DataFrame({"method": "attention", "cell_type": "B",
                          "gene": ["g1", "g1", "g1", "g1", "g2", "g3", "g4", "g5"],
                          "cre": ["c1", "c2", "c3", "c9", "c9", "c8", "c8", "c8"], "rank": [1, 2, 3, 4, 1, 1, 1, 1]})
    prior = pd.DataFrame({"tf": "TF1", "target": ["g1", "g2", "g3"]})
    rows = pd.DataFrame(enrichment.regulons(links, {"B": np.array(["c9"])}, prior))
    by = rows.set_index("links")
    assert set(by.index) == {"top 3 per gene", "all in-window pairs"}
    assert by.loc["top 3 per gene", "n_selected"] == 1  # g1's 4th cCRE is not one of its links
    assert by.loc["all in-window pairs", "n_selected"] == 2


def test_the_papers_gwas_score_averages_traits_against_their_own_variants(tmp_path):
    """Trait A: its variants on the top 100 cCREs have mean PIP 0.4 against the trait's 0.3 (ratio
    4/3); trait B: 0.3 against 0.3 (ratio 1). The score is their mean; the null's expectation is 1."""
    scores = pd.DataFrame({"cell_type": "all", "cre": [f"c{i}" for i in range(120)], "chrom": "chr1",
                           "start": np.arange(120) * 1000, "end": np.arange(120) * 1000 + 200,
                           "score": np.linspace(2, 1, 120)})
    lines = ["chrom\tpos\tpip\ttrait",
             "chr1\t101\t0.8\tA", "chr1\t1101\t0.0\tA", "chr1\t500501\t0.1\tA",  # 1101: c1, in the top 100
             "chr1\t2101\t0.3\tB", "chr1\t700001\t0.3\tB"]
    path = tmp_path / "finemap.tsv"
    path.write_text("\n".join(lines) + "\n")
    (row,) = enrichment.gwas_scores(scores, path)
    assert row["links"] == "top 100 cCREs" and row["n_term"] == 2 and row["n_hits"] == 3
    assert row["fold"] == pytest.approx((0.4 / 0.3 + 1.0) / 2)
    assert row["expected"] == pytest.approx(1.0, abs=0.05) and 0 < row["pvalue"] <= 1


def test_a_tfs_top_attended_cres_are_tested_against_cres_near_its_prior_targets():
    background = pd.DataFrame({"cre": [f"c{i}" for i in range(20)], "chrom": "chr1",
                               "start": np.arange(20) * 100_000, "end": np.arange(20) * 100_000 + 500})
    genes = pd.DataFrame({"gene": ["T1", "T2", "T3", "X"], "chrom": "chr1", "tss": [5_000, 105_000, 205_000, 1_505_000]})
    prior = pd.DataFrame({"tf": ["TF1", "TF1", "TF1", "TF2"], "target": ["T1", "T2", "T3", "X"]})
    tf_cres = pd.DataFrame({"tf": "TF1", "cre": ["c0", "c1", "c2", "c9"], "rank": [1, 2, 3, 4]})
    (row,) = enrichment.tf_attention_targets(tf_cres, prior, genes, background)
    # c0, c1, c2 lie within 10 kb of TF1's targets: all 3 are among its 4 top-attended of 20
    assert (row["kind"], row["term"], row["n_term"], row["n_selected"], row["n_hits"]) == ("tf_attention", "TF1", 3, 4, 3)
    assert row["pvalue"] == pytest.approx(stats.hypergeom.sf(2, 20, 3, 4))
