"""The translation assets end to end on the bundled BMMC data (one epoch), through real Dagster and DuckDB."""
import dagster as dg
import numpy as np
import pytest

from multiome_assets import warehouse
from multiome_assets.definitions import ASSETS, RESOURCES

ONE_EPOCH = {name: {"config": {"max_epochs": 1}} for name in ("translator_rna2atac", "translator_atac2rna")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIOME_WAREHOUSE", str(tmp_path_factory.mktemp("translation") / "warehouse"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", ["bmmc_starter"])
    selection = dg.AssetSelection.groups("translation").upstream() - dg.AssetSelection.groups("inputs")
    result = dg.materialize(ASSETS, partition_key="bmmc_starter", instance=instance, resources=RESOURCES,
                            selection=selection, run_config={"ops": ONE_EPOCH}, raise_on_error=False)
    yield result
    mp.undo()


def test_every_translation_asset_materializes(built):
    assert built.success
    done = {e.asset_key.path[-1] for e in built.get_asset_materialization_events()}
    assert {"translation_splits", "translator_rna2atac", "translator_atac2rna", "translated_atac", "translated_rna",
            "translation_metrics"} <= done


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
    splits = warehouse.read_table("translation_splits", "bmmc_starter")
    test = splits[(splits.scenario == "random") & (splits.role == "test")].cell
    random = atac.mod["random"]
    assert set(random.obs_names) == set(test)
    assert ((random.X >= 0) & (random.X <= 1)).all() and set(np.unique(random.layers["calls"])) <= {0.0, 1.0}
    rna = warehouse.read_artifact(warehouse.find_artifact("translated_rna", "bmmc_starter"))
    assert rna.mod["random"].n_vars == 570 and np.isfinite(rna.mod["random"].X).all()  # the panel's vocabulary genes
