"""The platform operating itself, end to end under `dagster dev` on 127.0.0.1, watched in a real
browser: the shared DoRothEA file is replaced by an edited release and, with no other action, the
folder sensor records the new prior version, the automation sensor launches the rerun, and the
metrics tables change — for the dataset that names DoRothEA only, with no backbone retrained.

Before `dagster dev` starts, the GRN assets of `bmmc_starter` are built in-process into the test's
instance (small settings); `bmmc_collectri` (the same cells, `prior: collectri`) is recorded as
built. Screenshots of each view a person passes through (the asset graph, an asset's metadata, the
automation page, the stale asset, the fresh one) go to $MULTIOME_UI_SCREENSHOTS or the test's temp dir.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from multiome_assets_tests.conftest import two_priors_data_dir
from multiome_assets_tests.defs.test_grn import SMALL
from multiome_assets_tests.ui_helpers import (
    DagsterDev,
    browser_page,
    loopback_env,
    open_page,
    require_browser,
    screenshot_on_failure,
    write_instance_yaml,
)

pytestmark = [pytest.mark.ui, pytest.mark.slow]
sync_api = require_browser()
expect = sync_api.expect

DATASETS = ("bmmc_starter", "bmmc_collectri")
RERUN_TIMEOUT_S = 900  # sensor ticks (30 s each) + the run: prior_edges, heads, export, evaluation


def _prepare(base: Path) -> dict:
    """A Dagster home, warehouse and data dir (copied priors, the two datasets), the inputs observed
    and the GRN assets built, as `make demo` would leave them."""
    from multiome_assets.dataset import load_spec
    from multiome_assets.definitions import ASSETS, RESOURCES, defs
    from multiome_assets.defs.inputs import changed_inputs
    from multiome_assets.warehouse import warehouse_dir

    home, warehouse, data = base / "dagster_home", base / "warehouse", base / "data"
    write_instance_yaml(home)
    two_priors_data_dir(data)

    mp = pytest.MonkeyPatch()
    mp.setenv("MULTIOME_WAREHOUSE", str(warehouse))
    mp.setenv("MULTIOME_DATA_DIR", str(data))
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.add_dynamic_partitions("dataset", list(DATASETS))
            for key in DATASETS:
                for event in changed_inputs(instance, key, load_spec(key), warehouse_dir()):
                    instance.report_runless_asset_event(event)
            result = dg.materialize(
                ASSETS, partition_key="bmmc_starter", instance=instance, resources=RESOURCES,
                selection=dg.AssetSelection.all() - dg.AssetSelection.groups("translation", "links", "regulons"),
                run_config={"ops": SMALL})
            assert result.success
            for key in defs.resolve_asset_graph().materializable_asset_keys:  # recorded as built
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition="bmmc_collectri"))
    finally:
        mp.undo()
    return {"home": home, "warehouse": warehouse, "data": data, "env": loopback_env(home, warehouse, data)}


@pytest.fixture(scope="module")
def operated(tmp_path_factory):
    base = tmp_path_factory.mktemp("operate")
    env = _prepare(base)
    shots = Path(os.environ.get("MULTIOME_UI_SCREENSHOTS") or base / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\noperate test: DAGSTER_HOME={env['home']} screenshots in {shots}")
    dev = DagsterDev(env=env["env"], log_path=base / "dagster_dev.log")
    try:
        dev.start()
        dev.wait_ready(timeout=120)
        with browser_page(dev.url) as page:
            yield {**env, "dev": dev, "page": page, "shots": shots}
    finally:
        dev.stop()
        print(f"dagster dev log: {dev.log_path}")


def _table(warehouse: Path, name: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((warehouse / "tables" / name).glob("*.parquet"))])


def _partition_page(page, asset: str, dataset: str = "bmmc_starter"):
    open_page(page, f"/assets/{asset}?view=partitions&partition={dataset}")
    header = page.get_by_role("heading", name=dataset)
    expect(page.get_by_text("Latest materialization").first).to_be_visible(timeout=60_000)
    return header


def test_the_asset_graph_shows_the_groups_and_their_assets(operated):
    page, shots = operated["page"], operated["shots"]
    with screenshot_on_failure(page, shots, operated["dev"], "asset_graph"):
        open_page(page, "/asset-groups")
        for group in ("inputs", "foundation", "grn", "translation", "links"):  # the lineage, group by group
            expect(page.get_by_text(group, exact=True).first).to_be_visible(timeout=90_000)
        page.screenshot(path=str(shots / "asset_graph.png"))
        open_page(page, "/asset-groups~group%3A%22grn%22")
        for name in ("grn_backbone", "grn_embeddings", "grn_head", "edge_scores", "grn_metrics"):
            expect(page.get_by_role("button", name=re.compile(rf"(^|\s){name} {name}$")).first).to_be_visible()
        page.screenshot(path=str(shots / "asset_graph_grn.png"))


def test_an_assets_metadata_renders_its_table_and_its_curves(operated):
    page, shots = operated["page"], operated["shots"]
    with screenshot_on_failure(page, shots, operated["dev"], "metadata"):
        _partition_page(page, "grn_metrics")
        row = page.locator("tr").filter(has=page.get_by_text("summary", exact=True))
        row.get_by_text("[Show Markdown]").click()
        dialog = page.get_by_role("dialog")
        table = dialog.locator("table")
        expect(table.locator("th").filter(has_text="auroc").first).to_be_visible()
        expect(table.locator("td").filter(has_text=re.compile(r"^epiawarenet_bce$")).first).to_be_visible()
        assert table.locator("tbody tr").count() >= 20  # every method on both splits
        page.screenshot(path=str(shots / "metadata_summary.png"))
        dialog.get_by_role("button", name="Close").click()

        for key in ("curves_tf_heldout", "methods_vs_baselines"):  # the PR/ROC curves, each method against its baselines
            row = page.locator("tr").filter(has=page.get_by_text(key, exact=True))
            row.get_by_text("[Show Markdown]").click()
            figure = page.get_by_role("dialog").locator("img")
            expect(figure).to_be_visible()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=figure.element_handle())
            box, frame = figure.bounding_box(), page.get_by_role("dialog").bounding_box()
            assert box["width"] > 400 and box["x"] + box["width"] <= frame["x"] + frame["width"]  # whole, not clipped
            page.screenshot(path=str(shots / f"metadata_{key}.png"))
            page.get_by_role("dialog").get_by_role("button", name="Close").click()


def test_the_schedule_and_the_sensors_are_running(operated):
    page, shots = operated["page"], operated["shots"]
    with screenshot_on_failure(page, shots, operated["dev"], "automation"):
        open_page(page, "/automation")
        for name in ("automation", "dataset_folder_sensor", "input_observation_schedule"):
            row = page.locator("[data-index]").filter(has=page.locator(f'a[href$="/{name}"]'))
            expect(row).to_have_count(1, timeout=60_000)
            toggle = row.locator("input[type=checkbox]").last  # the first one selects the row
            expect(toggle).to_be_checked()
        expect(page.get_by_text("Scheduled At 03:00 AM UTC")).to_be_visible()
        page.screenshot(path=str(shots / "automation.png"))


def test_a_replaced_prior_reruns_what_reads_it_on_its_own(operated):
    """The issue's done-when: replace the shared DoRothEA file and take no other action."""
    page, shots, dev, warehouse = operated["page"], operated["shots"], operated["dev"], operated["warehouse"]
    history_before = _table(warehouse, "grn_metrics_history")
    versions_before = _table(warehouse, "prior_versions")
    metrics_file = warehouse / "tables" / "grn_metrics" / "bmmc_starter.parquet"
    metrics_before = metrics_file.read_bytes()
    with dg.DagsterInstance.from_config(str(operated["home"])) as instance:
        runs_before = {r.run_id for r in instance.get_runs()}
        backbones_before = _materializations(instance, "grn_backbone")

    # a new release: the same file with every tenth edge gone, swapped in whole
    prior = operated["data"] / "reference" / "dorothea_human_ABC.csv"
    lines = prior.read_text().splitlines(keepends=True)
    edited = prior.with_name("dorothea_new_release.csv.part")
    edited.write_text(lines[0] + "".join(line for i, line in enumerate(lines[1:]) if i % 10 != 9))
    os.replace(edited, prior)

    with screenshot_on_failure(page, shots, dev, "rerun"), \
            dg.DagsterInstance.from_config(str(operated["home"])) as instance:
        deadline = time.monotonic() + RERUN_TIMEOUT_S
        runs = _wait(lambda: [r for r in instance.get_runs() if r.run_id not in runs_before] or None, deadline,
                     "no run launched after the prior was replaced")
        # while the run works through the chain, what follows prior_edges shows unsynced
        _wait(lambda: _materializations(instance, "prior_edges", "bmmc_starter") > 1 or None, deadline,
              "prior_edges not rematerialized")
        _partition_page(page, "grn_metrics")
        expect(page.get_by_text(re.compile(r"^Unsynced \(\d+\)$"))).to_be_visible(timeout=30_000)
        page.screenshot(path=str(shots / "stale.png"))

        def all_finished():
            new = [r for r in instance.get_runs() if r.run_id not in runs_before]
            return new if all(r.is_finished for r in new) else None

        runs = _wait(all_finished, deadline, "the automated run did not finish")
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * len(runs), [(r.run_id, r.status) for r in runs]
        assert {r.tags.get("dagster/sensor_name") for r in runs} == {"automation"}
        assert {r.tags.get("dagster/partition") for r in runs} == {"bmmc_starter"}  # not bmmc_collectri
        rerun = {key.to_user_string() for r in runs for key in r.asset_selection}
        assert {"prior_edges", "grn_head", "edge_scores", "grn_metrics", "grn_metrics_history"} <= rerun
        assert not rerun & {"multiome", "candidate_sets", "grn_backbone", "grn_embeddings", "grn_baselines"}
        assert _materializations(instance, "grn_backbone") == backbones_before  # no backbone retrained

    # the tables followed: a new prior version, its metrics beside the old ones
    versions = _table(warehouse, "prior_versions")
    assert len(versions) == len(versions_before) + 1 and set(versions.dataset) == {"bmmc_starter"}
    assert versions.edges_removed.iloc[-1] > 0 and versions.edges_added.iloc[-1] == 0
    history = _table(warehouse, "grn_metrics_history")
    assert set(history.content_hash) == set(history_before.content_hash) | {versions.content_hash.iloc[-1]}
    assert metrics_file.read_bytes() != metrics_before

    with screenshot_on_failure(page, shots, dev, "fresh"):
        _partition_page(page, "grn_metrics")
        expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
        expect(page.get_by_text(re.compile(r"^Unsynced \(\d+\)$"))).to_have_count(0, timeout=30_000)
        page.screenshot(path=str(shots / "fresh.png"))
        open_page(page, f"/runs/{runs[0].run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(shots / "automated_run.png"))


def _materializations(instance, asset: str, partition: str = "bmmc_starter") -> int:
    return len(instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=100).records)


def _wait(check, deadline: float, what: str):
    """Poll `check` every 2 s until it returns something other than None; fail with `what` at the deadline."""
    while (found := check()) is None:
        assert time.monotonic() < deadline, what
        time.sleep(2.0)
    return found
