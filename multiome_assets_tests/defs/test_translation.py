"""The translation and link assets end to end on the bundled data (one epoch), through real Dagster
and DuckDB: BMMC's translators and links, then SNARE-seq translated by them, paired and as RNA-only
and ATAC-only folders."""
from dataclasses import replace

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from multiome_assets import warehouse
from multiome_assets.build import applicable
from multiome_assets.dataset import DatasetError, load_spec
from multiome_assets.definitions import ASSETS, RESOURCES, defs
from multiome_assets.priors import read_tf_list
from multiome_assets.translation import cross
from multiome_assets_tests.conftest import BUNDLED

pytestmark = pytest.mark.slow  # whole asset groups really materialized: minutes

ONE_EPOCH = {name: {"config": {"max_epochs": 1}} for name in ("translator_rna2atac", "translator_atac2rna")}
SMALL_GRN = {**{name: {"config": {"max_epochs": 1}} for name in
                ("grn_backbone", "grn_backbone_rna_only", "grn_backbone_random_candidates")},
             "grn_head": {"config": {"epochs": 2}},
             "grn_baselines": {"config": {"methods": ["pearson"]}}}  # the triplets need the GRN's head
SNARE = yaml.safe_load((BUNDLED / "datasets/snareseq_hesc/dataset.yaml").read_text())
CROSS = {  # SNARE-seq translated by BMMC's translators: paired (scored), RNA only, ATAC only
    "snare_paired": {**SNARE, "files": {"rna": "../snareseq_hesc/rna.h5ad", "atac": "../snareseq_hesc/atac.h5ad"}},
    "snare_rna_only": {**SNARE, "format": "h5ad_rna", "files": {"rna": "../snareseq_hesc/rna.h5ad"}},
    "snare_atac_only": {**SNARE, "format": "h5ad_atac", "files": {"atac": "../snareseq_hesc/atac.h5ad"}},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("translation")
    data = root / "data"
    (data / "datasets").mkdir(parents=True)
    (data / "reference").symlink_to(BUNDLED / "reference")
    for key in ("bmmc_starter", "snareseq_hesc"):
        (data / "datasets" / key).symlink_to(BUNDLED / "datasets" / key)
    for key, settings in CROSS.items():
        (data / "datasets" / key).mkdir()
        (data / "datasets" / key / "dataset.yaml").write_text(yaml.safe_dump({**settings, "translator_from": "bmmc_starter"}))
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIOME_DATA_DIR", str(data))
    mp.setenv("MULTIOME_WAREHOUSE", str(root / "warehouse"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", ["bmmc_starter", *CROSS])
    graph = defs.resolve_asset_graph()
    results = {}
    crossing = dg.AssetSelection.assets("cross_translated_atac", "cross_translated_rna", "cross_translation_metrics")
    first = dg.AssetSelection.groups("translation", "links", "regulons") - crossing
    for key, selection in (("bmmc_starter", first.upstream()),
                           *((key, crossing.upstream() | dg.AssetSelection.assets("translated_profiles")) for key in CROSS)):
        keys = applicable(defs, (selection - dg.AssetSelection.groups("inputs")).resolve(graph), load_spec(key))
        results[key] = dg.materialize(ASSETS, partition_key=key, instance=instance, resources=RESOURCES,
                                      selection=keys, run_config={"ops": {k: v for k, v in (ONE_EPOCH | SMALL_GRN).items()
                                                                          if dg.AssetKey(k) in keys}},
                                      raise_on_error=False)
    yield results
    mp.undo()


def _made(result) -> set[str]:
    return {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}


def test_every_translation_asset_materializes(built):
    assert all(r.success for r in built.values())
    assert {"translation_splits", "translator_rna2atac", "translator_atac2rna", "translated_atac", "translated_rna",
            "translation_metrics", "translated_profiles"} <= _made(built["bmmc_starter"])
    assert {"cross_translated_atac", "cross_translated_rna", "cross_translation_metrics"} <= _made(built["snare_paired"])
    # a single-modality dataset gets the translation from what it has, and nothing that needs both
    assert _made(built["snare_rna_only"]) == {"multiome", "gene_annotation", "gene_vocab_map", "peak_vocab_matrix",
                                               "cross_translated_atac", "translated_profiles"}
    assert "cross_translated_rna" in _made(built["snare_atac_only"])


def test_the_ui_shows_whether_the_translators_beat_the_simple_ones(built):
    """The result check on translation_metrics, as Dagster evaluated it: its verdict is the table's."""
    (check,) = [e for e in built["bmmc_starter"].get_asset_check_evaluations()
                if e.check_name == "transformer_beats_best_baseline"]
    table = warehouse.read_table("translation_metrics", "bmmc_starter")
    rows = table[(table.scenario == "random") & (table.direction == "rna2atac") & (table.metric == "per_cre_auroc_macro")]
    values = rows.set_index("method").value
    beats_rna2atac = values["cisformer"] > values[["global_mean", "knn", "ridge"]].max()
    assert check.severity == dg.AssetCheckSeverity.WARN and "per_cre_auroc_macro" in check.description
    assert check.passed <= beats_rna2atac  # passing needs both directions to beat their best simple translator


def test_no_test_cell_trains_or_validates(built):
    splits = warehouse.read_table("translation_splits", "bmmc_starter")
    assert set(splits.scenario) == {"random", "held_out_donor", "held_out_cell_type"}
    one_role = splits.groupby(["scenario", "cell"]).role.nunique()
    assert (one_role == 1).all()
    for scenario, rows in splits.groupby("scenario"):
        assert set(rows.role) == {"train", "validation", "test"}, scenario


def test_metrics_answer_the_question_in_sql(built):
    table = warehouse.query("select direction, scenario, method, metric, value from translation_metrics")
    for direction in ("rna2atac", "atac2rna"):
        methods = set(table[table.direction == direction].method)
        assert {"cisformer", "global_mean", "knn", "ridge", "cell_type_mean_oracle", "measured"} <= methods
    # a popularity score ranks every cell alike at a CRE: exactly 0.5 per CRE, whatever it scores pooled
    popularity = table[(table.method == "global_mean") & (table.metric == "per_cre_auroc_macro")].value
    np.testing.assert_allclose(popularity, 0.5)
    beats = warehouse.query("""
        select t.direction, t.scenario, t.metric, t.value - b.value as lead
        from translation_metrics t join translation_metrics b using (dataset, direction, scenario, metric)
        where t.method = 'cisformer' and b.method = 'knn' and t.metric in ('per_cre_auroc_macro', 'gene_pearson')""")
    assert len(beats) == 2 * 3 and beats.lead.notna().all()


def test_translated_profiles_hold_the_test_cells(built):
    atac = warehouse.read_artifact(warehouse.find_artifact("translated_atac", "bmmc_starter"))
    assert set(atac.mod) == {"atac", "atac_held_out_donor", "atac_held_out_cell_type"}
    splits = warehouse.read_table("translation_splits", "bmmc_starter")
    for profile in atac.mod.values():
        scenario = profile.uns["scenario"]
        test = splits[(splits.scenario == scenario) & (splits.role == "test")].cell
        assert set(profile.obs_names) == set(test) and (profile.obs.role == "test").all()
    random = atac["atac"]
    assert ((random.X >= 0) & (random.X <= 1)).all() and sp.issparse(random.layers["calls"]) \
        and set(np.unique(random.layers["calls"].data)) <= {1.0}  # the calls, sparse
    assert np.array_equal(random.layers["calls"].toarray() > 0, random.X >= random.uns["threshold"])
    rna = warehouse.read_artifact(warehouse.find_artifact("translated_rna", "bmmc_starter"))
    assert rna["rna"].n_vars == 570 and np.isfinite(rna["rna"].X).all()  # the panel's vocabulary genes


def test_a_scanpy_user_sets_translated_beside_measured_without_a_lookup_table(built):
    """Issue 30's test: genes by the dataset's symbols, regions by chr:start-end that overlap the
    dataset's own peaks (pyranges), expression on multiome's scale, where each profile came from."""
    import pyranges as pr
    import scanpy as sc

    mo = warehouse.read_artifact(warehouse.find_artifact("multiome", "bmmc_starter"))
    rna = warehouse.read_artifact(warehouse.find_artifact("translated_rna", "bmmc_starter"))["rna"]
    translators = warehouse.read_artifact(warehouse.find_artifact("translator_atac2rna", "bmmc_starter"))
    assert rna.var_names.is_unique and rna.var_names.isin(mo.rna.var_names).all()  # the measured symbols
    measured = mo.rna[rna.obs_names, rna.var_names]
    assert set(rna.obs.cell_type) <= set(mo.rna.obs.cell_type) and (rna.obs.source == "bmmc_starter").all()
    # the same scale: a gene's mean translated expression tracks its measured mean
    r = np.corrcoef(np.asarray(measured.X.mean(0)).ravel(), np.asarray(rna.X.mean(0)).ravel())[0, 1]
    assert r > 0.8, r
    assert rna.uns["direction"] == "atac2rna" and rna.uns["profile"] == translators.profile
    assert rna.uns["library_size"] == translators.libraries["random"] and len(rna.uns["translator"]) == 64
    both = sc.concat({"measured": measured, "translated": rna}, label="kind", index_unique=":")
    sc.pp.pca(both, n_comps=5)
    sc.pl.violin(both, keys=list(rna.var_names[:2]), groupby="kind", show=False)

    atac = warehouse.read_artifact(warehouse.find_artifact("translated_atac", "bmmc_starter"))["atac"]
    regions = atac.var_names.str.extract(r"^(chr[^:]+):(\d+)-(\d+)$")
    assert regions.notna().all().all()
    translated = pr.PyRanges(pd.DataFrame({"Chromosome": regions[0], "Start": regions[1].astype(int),
                                           "End": regions[2].astype(int)}))
    peaks = mo.atac.var_names.str.extract(r"^([^:\-_]+)[:\-_](\d+)[\-_](\d+)$").dropna()  # chr1-9-200, chr1:9-200
    own = pr.PyRanges(pd.DataFrame({"Chromosome": peaks[0], "Start": peaks[1].astype(int), "End": peaks[2].astype(int)}))
    # every covered cCRE was covered because one of the dataset's accessible peaks overlaps it
    assert len(translated.overlap(own)) == atac.n_vars


def test_a_single_modality_dataset_is_translated_end_to_end(built):
    atac = warehouse.read_artifact(warehouse.find_artifact("cross_translated_atac", "snare_rna_only"))
    (name, profile), = atac.mod.items()
    assert name == "atac" and profile.uns["scenario"] == "from_bmmc_starter" and profile.uns["source"] == "bmmc_starter"
    assert (profile.obs.role == "translated").all() and (profile.obs.source == "bmmc_starter").all()
    bmmc_cres = warehouse.read_artifact(warehouse.find_artifact("translated_atac", "bmmc_starter"))["atac"].var
    assert profile.var_names.tolist() == bmmc_cres.index.tolist()  # what BMMC's translator learned
    paired = warehouse.read_artifact(warehouse.find_artifact("multiome", "snare_paired"))
    assert profile.n_obs == paired.n_cells and ((profile.X >= 0) & (profile.X <= 1)).all()
    # the same cells read from an RNA-only folder translate exactly as from the paired folder
    same = warehouse.read_artifact(warehouse.find_artifact("cross_translated_atac", "snare_paired"))["atac"]
    np.testing.assert_array_equal(profile.X, same.X)
    rna = warehouse.read_artifact(warehouse.find_artifact("cross_translated_rna", "snare_atac_only"))["rna"]
    assert rna.n_vars == 570 and np.isfinite(rna.X).all()  # BMMC's vocabulary genes


def test_cross_dataset_metrics_and_profiles_in_sql(built):
    table = warehouse.query("select direction, scenario, method, metric, value from cross_translation_metrics "
                            "where dataset = 'snare_paired'")
    assert set(table.scenario) == {"from_bmmc_starter"}
    for direction in ("rna2atac", "atac2rna"):
        assert {"cisformer", "global_mean", "knn", "ridge"} <= set(table[table.direction == direction].method)
    listed = warehouse.query("select dataset, asset, direction, scenario, source, cells from translated_profiles")
    rna_only = listed[listed.dataset == "snare_rna_only"]
    assert rna_only[["asset", "scenario", "source"]].values.tolist() == [
        ["cross_translated_atac", "from_bmmc_starter", "bmmc_starter"]]
    bmmc = listed[listed.dataset == "bmmc_starter"]
    assert set(bmmc.scenario) == {"random", "held_out_donor", "held_out_cell_type"} and len(bmmc) == 6


def test_translators_refuse_another_genome_or_vocabulary(built):
    translators = warehouse.read_artifact(warehouse.find_artifact("translator_rna2atac", "bmmc_starter"))
    spec = load_spec("snare_rna_only")
    cross.check_translators(translators, spec, "bmmc_starter")  # the same vocabularies: accepted
    with pytest.raises(DatasetError, match="genome=mm10"):
        cross.check_translators(translators, replace(spec, genome="mm10"), "bmmc_starter")
    translators.checkpoints["random"].features["vocabularies"][1] = "genes=another"
    with pytest.raises(DatasetError, match="vocabularies"):
        cross.check_translators(translators, spec, "bmmc_starter")
    del translators.checkpoints["random"]  # translators without the scenario other datasets are translated by
    with pytest.raises(DatasetError, match="have no 'random' scenario"):
        cross.check_translators(translators, spec, "bmmc_starter")


def test_a_single_modality_source_is_refused(built):
    with pytest.raises(DatasetError, match="has only RNA; name a paired dataset"):
        cross.require_source(load_spec("snare_paired"), load_spec("snare_rna_only"))


def test_links_answer_the_questions_in_sql(built):
    assert {"cre_gene_links", "gene_link_scores", "cre_link_scores", "celltype_specific_cres", "link_validation",
            "enrichment", "tf_attention_cres"} <= _made(built["bmmc_starter"])
    # each TF gene's most attended cCREs, and the check of them against its prior targets
    tf_cres = warehouse.query("select tf, count(*) n, min(rank) best from tf_attention_cres group by tf")
    assert len(tf_cres) and (tf_cres.best == 1).all() and (tf_cres.n <= 500).all()
    assert set(tf_cres.tf) <= set(read_tf_list(BUNDLED / "reference/human_tfs_lambert2018.txt"))
    # which cCREs link to gene X in cell type Y, by attention and by correlation
    top = warehouse.query("""
        select method, cell_type, gene, cre, distance, score, rank from cre_gene_links
        where dataset = 'bmmc_starter' and gene = (select gene from cre_gene_links where method = 'attention'
          and cell_type = 'CD14+ Mono' group by gene order by count(*) desc limit 1)
        and cell_type in ('CD14+ Mono', 'all') order by method, cell_type, rank""")
    assert set(top.method) == {"attention", "correlation"}
    assert set(top[top.method == "attention"].cell_type) == {"CD14+ Mono", "all"}
    assert (top.distance <= 250_000).all()
    for _, group in top.groupby(["method", "cell_type"]):
        assert group["rank"].min() == 1 and group.score.is_monotonic_decreasing
    # which TFs' regulons are enriched among the genes of cell type Y's specific cCREs
    enriched = warehouse.query("""
        select cell_type, term, n_hits, fold, pvalue, fdr from enrichment
        where dataset = 'bmmc_starter' and kind = 'regulon' order by cell_type, pvalue""")
    assert len(enriched) and enriched.fdr.between(0, 1).all() and (enriched.fdr >= enriched.pvalue - 1e-12).all()
    specific = warehouse.query("select cell_type, count(*) n from celltype_specific_cres where specific group by 1")
    assert len(specific) >= 2  # several cell types own cCREs
    meta = {e.asset_key.path[-1]: e.materialization.metadata for e in built["bmmc_starter"].get_asset_materialization_events()}
    for asset, key in (("celltype_specific_cres", "heatmap"), ("enrichment", "dot_plot"),
                       ("translation_metrics", "methods_vs_baselines")):
        assert "data:image/png;base64," in meta[asset][key].value, (asset, key)
    selections = warehouse.query("select distinct links from enrichment where kind = 'regulon'").links
    assert set(selections) == {"top 3 per gene", "all in-window pairs"}
    correlation = warehouse.query("select zscore, pvalue from cre_gene_links where method = 'correlation'")
    assert correlation.pvalue.between(0, 1).all() and correlation.zscore.notna().mean() > 0.9
    checks = warehouse.query("select method, kind, n, observed, baseline, pvalue, cells, n_cells from link_validation")
    assert {"top_vs_distance_matched", "expression_by_links", "median_distance_bp"} <= set(checks.kind)
    splits = warehouse.read_table("translation_splits", "bmmc_starter")
    held_out = ((splits.scenario == "random") & (splits.role == "test")).sum()
    assert set(checks.cells) == {"held_out", "all (in-sample)"}
    assert set(checks[checks.cells == "held_out"].n_cells) == {held_out}
    assert set(checks[checks.cells != "held_out"].n_cells) == {splits.cell.nunique()}
    genes = warehouse.query("select cell_type, score from gene_link_scores where dataset = 'bmmc_starter'")
    assert genes.score.between(0, 1).all() and "all" in set(genes.cell_type)


def test_triplets_of_both_methods_answer_in_sql(built):
    """`select * from tf_cre_gene` answers with triplets whose three pieces are in the other tables,
    and tf_cre_gene_metrics compares them with the head alone and evidence + distance alone."""
    assert {"tf_cre_gene", "tf_cre_gene_metrics"} <= _made(built["bmmc_starter"])
    triplets = warehouse.query("select * from tf_cre_gene where dataset = 'bmmc_starter'")
    assert len(triplets) and set(triplets.link_method) <= {"attention", "correlation"}
    assert set(triplets.tf_cre_evidence) == {"tf_attention"}  # no genome FASTA in the bundled data
    assert triplets.score.between(0, 1).all() and (triplets.cre == triplets.chrom + "-" + triplets.start.astype(str)
                                                   + "-" + triplets.end.astype(str)).all()
    # every piece is where the triplet says: the edge, the link (among the gene's 10 best), the TF's cCRE
    edge = warehouse.query("""select count(*) from tf_cre_gene t left join edge_scores e on e.dataset = t.dataset
        and e.method = 'epiawarenet_bce' and e.context = t.cell_type and e.tf = t.source and e.target = t.target
        where e.tf is null""").iloc[0, 0]
    link = warehouse.query("""select count(*) from tf_cre_gene t left join cre_gene_links l on l.dataset = t.dataset
        and l.method = t.link_method and l.cell_type = t.cell_type and l.cre = t.cre_id and l.gene = t.target
        and l.rank <= 10 where l.gene is null""").iloc[0, 0]
    tf_cre = warehouse.query("""select count(*) from tf_cre_gene t left join tf_attention_cres a
        on a.dataset = t.dataset and a.tf = t.source and a.cre = t.cre_id where a.tf is null""").iloc[0, 0]
    assert edge == link == tf_cre == 0
    assert (triplets.groupby(["cell_type", "link_method", "tf_cre_evidence"])["rank"].min() == 1).all()
    net = warehouse.query("""select source, target, weight from tf_cre_gene_decoupler where cell_type = 'all'
        and link_method = 'attention'""")  # decoupler's net: one row per TF -> gene pair
    assert len(net) and not net.duplicated(["source", "target"]).any()
    metrics = warehouse.query("select split, method, n_supported, auroc, degree_matched_auroc from tf_cre_gene_metrics")
    assert set(metrics.split) == {"random", "tf_heldout"}
    assert set(metrics.method) == {"epiawarenet_bce", "triplet_attention", "triplet_correlation", "evidence_distance"}
    assert metrics.auroc.between(0, 1).all()
    assert (metrics[metrics.method.str.startswith("triplet")].n_supported > 0).all()


def test_the_docs_results_tables_are_written_from_the_tables(built):
    from multiome_assets import doc_tables

    root = warehouse.warehouse_dir()
    text = ("before\n<!-- table: translation_metrics bmmc_starter rna2atac -->\nstale\n<!-- end table -->\n"
            "between\n<!-- table: tf_cre_gene_metrics -->\n<!-- end table -->\nafter\n")
    new = doc_tables.rewritten(text, root)
    assert "stale" not in new and new.startswith("before\n") and new.endswith("after\n")
    value = warehouse.query("""select value from translation_metrics where dataset = 'bmmc_starter'
        and direction = 'rna2atac' and scenario = 'random' and method = 'cisformer'
        and metric = 'per_cre_auroc_macro'""").value[0]
    assert f"| random | cisformer | {value:.3f} |" in new
    assert "| bmmc_starter | random | tf_attention | triplet_attention |" in new
    assert doc_tables.rewritten(new, root) == new


def test_the_docs_prose_values_query_real_tables(built):
    """Every number the docs' prose takes from SQL names tables and columns the warehouse has (the
    values themselves are the demo's: `python -m multiome_assets.doc_tables --check`)."""
    from multiome_assets import doc_tables
    from multiome_assets.dataset import PROJECT_ROOT

    queries = {name: sql for page in doc_tables.DOCS for name, sql in
               doc_tables.queries((PROJECT_ROOT / page).read_text()).items()}
    assert len(queries) >= 20
    for name, sql in queries.items():
        described = warehouse.query(f"describe {sql}")  # binds every table and column, reads no row
        assert len(described) == 1, f"{name}: {len(described)} columns"
