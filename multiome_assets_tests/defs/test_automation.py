"""Priors that update themselves into reruns, decided by Dagster's own automation evaluation on a
real instance: an edited prior requests exactly what reads it, in exactly the datasets that use it;
the same content again requests nothing."""

import dagster as dg
import pytest

from multiome_assets.dataset import load_spec
from multiome_assets.definitions import defs
from multiome_assets.defs.automation import following
from multiome_assets.defs.inputs import changed_inputs
from multiome_assets.warehouse import warehouse_dir
from multiome_assets_tests.conftest import two_priors_data_dir

pytestmark = pytest.mark.slow  # whole asset groups really materialized: minutes

# what reads the prior, directly or not (the expression baselines read the TF list, not the prior)
FOLLOW_THE_PRIOR = {"prior_edges", "prior_versions", "grn_head", "edge_scores", "grn_metrics", "grn_regulator_enrichment",
                    "grn_metrics_history", "enrichment", "tf_cre_gene", "tf_cre_gene_metrics"}


@pytest.fixture
def instance(tmp_path, monkeypatch):
    """Two datasets on the same cells: bmmc_starter names DoRothEA (a shared reference file),
    bmmc_collectri CollecTRI. Every asset recorded as materialized, every input as observed."""
    data = tmp_path / "data"
    two_priors_data_dir(data, copy_starter=False)
    monkeypatch.setenv("MULTIOME_DATA_DIR", str(data))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", ["bmmc_starter", "bmmc_collectri"])
    _observe(instance)
    for key in defs.resolve_asset_graph().materializable_asset_keys:
        for partition in ("bmmc_starter", "bmmc_collectri"):
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
    return instance, data


def _observe(instance) -> list[str]:
    """What the folder sensor and the nightly observation record: a new data version per changed input."""
    changed = []
    for key in ("bmmc_starter", "bmmc_collectri"):
        for event in changed_inputs(instance, key, load_spec(key), warehouse_dir()):
            instance.report_runless_asset_event(event)
            changed.append(f"{event.asset_key.to_user_string()}:{key}")
    return changed


def _requested(result) -> set[tuple[str, str]]:
    return {(key.to_user_string(), partition) for key in defs.resolve_asset_graph().materializable_asset_keys
            for partition in result.get_requested_partitions(key)}


def _append_edge(path, line):
    with open(path, "a") as f:
        f.write(line)


def test_an_edited_shared_prior_reruns_what_reads_it_in_the_datasets_that_use_it(instance):
    instance, data = instance
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
    assert _requested(settled) == set()  # everything current: nothing to do

    _append_edge(data / "reference/dorothea_human_ABC.csv", "STAT3,A,CD74,1\n")  # a new release, say
    assert _observe(instance) == ["input/prior:bmmc_starter"]  # bmmc_collectri reads CollecTRI
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
    assert _requested(result) == {(asset, "bmmc_starter") for asset in FOLLOW_THE_PRIOR}  # no backbone, no QC

    # the same content observed again is no update
    for event in changed_inputs(instance, "bmmc_starter", load_spec("bmmc_starter"), warehouse_dir()):
        pytest.fail(f"{event} recorded again")
    same = instance.get_latest_data_version_record(dg.AssetKey(["input", "prior"]), is_source=True,
                                                   partition_key="bmmc_starter")
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key=["input", "prior"], partition="bmmc_starter",
        tags={"dagster/data_version": same.event_log_entry.asset_observation.tags["dagster/data_version"]}))
    for key in FOLLOW_THE_PRIOR:  # the requested runs done
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition="bmmc_starter"))
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert _requested(after) == set()


def test_a_datasets_own_prior_reruns_that_dataset_alone(instance):
    instance, data = instance
    settled = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    _append_edge(data / "reference/collectri_human.csv", "STAT3,CD74,1,12345\n")
    assert _observe(instance) == ["input/prior:bmmc_collectri"]
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
    assert _requested(result) == {(asset, "bmmc_collectri") for asset in FOLLOW_THE_PRIOR}


def test_automation_is_on_by_default_and_the_observation_is_scheduled():
    assert defs.resolve_sensor_def("automation").default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("input_observation_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING and schedule.cron_schedule == "0 3 * * *"
    # exactly the assets downstream of the prior and the TF list follow their inputs on their own,
    # except the GRN's gene selection and what reaches them only through it (the backbones: retraining
    # them is a deliberate rerun, grn.md)
    graph = defs.resolve_asset_graph()
    automated = {key.to_user_string() for key in graph.materializable_asset_keys
                 if graph.get(key).automation_condition is not None}
    inputs = [dg.AssetKey(["input", "prior"]), dg.AssetKey(["input", "tf_list"])]
    assert automated == {key.to_user_string() for key in following(graph, inputs)}
    assert {"grn_head", "grn_baselines", "edge_scores", "tf_attention_cres"} <= automated
    assert graph.get(dg.AssetKey("grn_backbone")).automation_condition is None


def test_priors_update_refuses_a_bad_file_and_installs_a_good_one_into_reruns(instance, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from multiome_assets.cli import main as cli

    _, data = instance
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    runner = CliRunner()
    for key in ("bmmc_starter", "bmmc_collectri"):
        assert runner.invoke(cli, ["register", key]).exit_code == 0
    real = dg.DagsterInstance.get()
    for key in defs.resolve_asset_graph().materializable_asset_keys:
        for partition in ("bmmc_starter", "bmmc_collectri"):
            real.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
    settled = dg.evaluate_automation_conditions(defs=defs, instance=real)
    installed = data / "reference/dorothea_human_ABC.csv"
    before = installed.read_bytes()

    bad = tmp_path / "bad.csv"
    bad.write_text("source,target,weight\nNOTATF,NOTAGENE,1\n")
    out = runner.invoke(cli, ["priors", "update", "dorothea", str(bad)])
    assert out.exit_code != 0 and "refused, dorothea_human_ABC.csv unchanged" in out.output
    assert "for dataset bmmc_starter: none of its 1 edges" in out.output
    assert installed.read_bytes() == before
    assert _requested(dg.evaluate_automation_conditions(defs=defs, instance=real, cursor=settled.cursor)) == set()

    good = tmp_path / "dorothea_v2.csv"
    good.write_bytes(before + b"STAT3,A,CD74,1\n")
    out = runner.invoke(cli, ["priors", "update", "dorothea", str(good)])
    assert out.exit_code == 0, out.output
    assert installed.read_bytes() == good.read_bytes()
    assert "bmmc_starter:" in out.output and "stale: edge_scores, enrichment, grn_head" in out.output
    assert "bmmc_collectri" not in out.output
    result = dg.evaluate_automation_conditions(defs=defs, instance=real, cursor=settled.cursor)
    assert _requested(result) == {(asset, "bmmc_starter") for asset in FOLLOW_THE_PRIOR}
