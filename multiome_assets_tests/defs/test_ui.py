"""The Dagster UI in a real headless browser: `dagster dev` bound to 127.0.0.1 lists the foundation
assets with their `dataset` partitions, and one asset partition is materialized FROM THE UI
(Materialize… → pick `bmmc_starter` → Launch 1 run), checked on the run page, in the instance and
in the warehouse.

Needs Debian's chromium (/usr/bin/chromium, or $CHROMIUM_PATH) and Playwright for Python; skipped
with a reason when either is missing (a collection error instead where $MULTIOME_UI_REQUIRED=1).
Screenshots go to $MULTIOME_UI_SCREENSHOTS if set, else to the test's temp dir (the path is printed;
see `-s` or the captured output on failure). Run only these: `pytest -m ui`; skip them: `-m "not ui"`.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from multiome_assets.dataset import data_dir, list_dataset_keys
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


def _group(name: str) -> list[str]:
    """The materializable assets of one group, as the Definitions declare them (what the UI must list)."""
    from multiome_assets.definitions import defs

    return sorted(node.key.to_user_string() for node in defs.resolve_asset_graph().asset_nodes
                  if node.group_name == name and not node.is_external)


FOUNDATION = _group("foundation")
DATASET = "bmmc_starter"
ASSET = "multiome"  # the root asset: one step, the fastest to materialize
RUN_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def ui_env(tmp_path_factory):
    """Temp DAGSTER_HOME (telemetry off), warehouse and data dir; `bmmc_starter` registered.

    The data dir holds only `bmmc_starter` (a copy of the bundled folder) and `reference/`, so
    `dataset_folder_sensor` (running by default) finds nothing new and launches no run of its own:
    every run in this instance is one the browser launched.
    """
    import dagster as dg

    base = tmp_path_factory.mktemp("ui")
    home, warehouse, data = base / "dagster_home", base / "warehouse", base / "data"
    write_instance_yaml(home)
    warehouse.mkdir()
    (data / "datasets").mkdir(parents=True)
    source = data_dir()
    (data / "reference").symlink_to(source / "reference")
    # A copy, not a symlink: dataset files must lie inside the data dir.
    shutil.copytree(source / "datasets" / DATASET, data / "datasets" / DATASET)
    shots = Path(os.environ.get("MULTIOME_UI_SCREENSHOTS") or base / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    print(f"\nUI test: DAGSTER_HOME={home} MULTIOME_WAREHOUSE={warehouse} screenshots in {shots}")

    env = loopback_env(home, warehouse, data)

    keys = list_dataset_keys(data)
    assert keys == [DATASET], keys
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("dataset", keys)
        assert instance.get_dynamic_partitions("dataset") == [DATASET]
    return {"home": home, "warehouse": warehouse, "data": data, "shots": shots, "env": env, "base": base}


@pytest.fixture(scope="module")
def dagster_dev(ui_env):
    dev = DagsterDev(env=ui_env["env"], log_path=ui_env["base"] / "dagster_dev.log")
    try:
        dev.start()
        dev.wait_ready(timeout=120)
        yield dev
    finally:
        dev.stop()
        print(f"dagster dev log: {dev.log_path}")


@pytest.fixture(scope="module")
def page(dagster_dev):
    with browser_page(dagster_dev.url) as pg:
        yield pg


def test_catalog_lists_foundation_assets(page, ui_env, dagster_dev):
    with screenshot_on_failure(page, ui_env["shots"], dagster_dev, "catalog"):
        open_page(page, "/assets")
        # Generous first timeout: the code location may still be loading.
        expect(page.locator('a[href="/assets/candidate_sets"]')).to_be_visible(timeout=90_000)
        # a new user's first page is the work, not Dagster's first-run dialog (it would show after 1 s):
        # the instance the project writes says nux: {enabled: false}; nothing in the browser dismisses it
        page.wait_for_timeout(2_500)
        expect(page.get_by_text("Join the Dagster community")).to_have_count(0)
        # The catalog filtered to the group (what typing `group:"foundation"` in its search box does):
        # the table is virtualized, so filtering keeps every foundation row rendered.
        open_page(page, "/assets?asset-selection=group%3A%22foundation%22")
        for name in FOUNDATION:
            expect(page.locator(f'a[href="/assets/{name}"]')).to_be_visible(timeout=60_000)
        expect(page.get_by_text("foundation", exact=True).first).to_be_visible()
        # Each asset's status cell counts its partitions: just bmmc_starter.
        expect(page.get_by_text("1 partition", exact=True)).to_have_count(len(FOUNDATION), timeout=60_000)
        page.screenshot(path=str(ui_env["shots"] / "catalog.png"))

        # The lineage graph of the group lists the same assets (sidebar buttons: "<status> name name").
        open_page(page, '/asset-groups~group%3A%22foundation%22')
        for name in FOUNDATION:
            node = page.get_by_role("button", name=re.compile(rf"(^|\s){name} {name}$"))
            expect(node.first).to_be_visible(timeout=60_000)
        page.screenshot(path=str(ui_env["shots"] / "lineage.png"))

        # The lineage's roots: the dataset's input files and settings, as source assets
        open_page(page, "/assets?asset-selection=group%3A%22inputs%22")
        for name in ("cells", "prior", "tf_list", "candidate_window"):
            expect(page.locator(f'a[href="/assets/input/{name}"]')).to_be_visible(timeout=60_000)


def test_asset_page_shows_dataset_partition(page, ui_env, dagster_dev):
    with screenshot_on_failure(page, ui_env["shots"], dagster_dev, "asset_partitions"):
        open_page(page, f"/assets/{ASSET}")
        expect(page.get_by_role("button", name="Materialize…")).to_be_visible(timeout=60_000)
        page.get_by_role("tab", name="Partitions", exact=True).click()
        expect(page).to_have_url(re.compile(r"view=partitions"))
        expect(page.get_by_text(re.compile(r"^1 Partitions? Selected$"))).to_be_visible()
        expect(page.get_by_text(DATASET, exact=True).first).to_be_visible()
        page.screenshot(path=str(ui_env["shots"] / "asset_partitions.png"), full_page=True)


def test_materialize_partition_from_ui(page, ui_env, dagster_dev):
    import dagster as dg

    shots = ui_env["shots"]
    with screenshot_on_failure(page, ui_env["shots"], dagster_dev, "materialize"):
        open_page(page, f"/assets/{ASSET}?view=partitions")
        expect(page.get_by_text("Missing (1)")).to_be_visible(timeout=60_000)  # not materialized yet
        page.screenshot(path=str(shots / "asset_page.png"), full_page=True)

        # Materialize… on a partitioned asset opens the launch dialog: pick the partition there.
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {ASSET}")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_text("Loading pipeline and partition sets...")).to_have_count(0, timeout=60_000)
        dialog.get_by_text("Select a partition or create one").click()
        page.get_by_placeholder("Filter partitions").fill(DATASET)
        option = page.get_by_role("menuitem").filter(has=page.locator(f'[title="{DATASET}"]'))
        expect(option).to_have_count(1)
        option.click()
        expect(option.locator("input[type=checkbox]")).to_be_checked()
        dialog.get_by_text(f"Launch runs to materialize {ASSET}").click()  # close the partition menu
        expect(page.get_by_placeholder("Filter partitions")).to_be_hidden()
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
        page.screenshot(path=str(shots / "launch_dialog.png"))
        launch = dialog.get_by_role("button", name="Launch 1 run")
        expect(launch).to_be_enabled()
        launch.click()

        # Toast: "Launched run <8-char id>  [View]"; View links to /runs/<run id>.
        toast = page.get_by_role("listitem").filter(has_text=re.compile(r"Launched run [0-9a-f]{8}"))
        expect(toast).to_be_visible(timeout=60_000)
        view = toast.get_by_role("link", name="View")
        href = view.get_attribute("href")
        run_id = re.fullmatch(r"/runs/([0-9a-f-]{36})", href).group(1)
        try:
            view.click(timeout=5_000)
        except sync_api.Error:  # the toast may already have faded on a slow machine
            open_page(page, href)
        expect(page).to_have_url(re.compile(rf"/runs/{run_id}"))
        expect(page.get_by_text(f"partition: {DATASET}")).to_be_visible()

        # Wait (bounded) for the run to finish, watching the instance; fail fast on failure.
        with dg.DagsterInstance.from_config(str(ui_env["home"])) as instance:
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while True:
                run = instance.get_run_by_id(run_id)
                if run is not None and run.is_finished:
                    break
                assert time.monotonic() < deadline, (
                    f"run {run_id} not finished after {RUN_TIMEOUT_S}s: {run and run.status}")
                time.sleep(1.0)
            errors = [] if run.status == dg.DagsterRunStatus.SUCCESS else [
                f"{e.dagster_event.event_type_value}: {e.dagster_event.message or ''} "
                f"{e.dagster_event.event_specific_data}"
                for e in instance.all_logs(run_id)
                if e.is_dagster_event and e.dagster_event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE")
            ]
            assert run.status == dg.DagsterRunStatus.SUCCESS, f"run {run_id}: {run.status}\n" + "\n".join(errors)
            assert run.tags.get("dagster/partition") == DATASET
            assert run.tags.get("dagster/from_ui") == "true"
            assert "dagster/sensor_name" not in run.tags

            # The run page says Success (the UI polls every ~2 s).
            expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=30_000)
            page.screenshot(path=str(shots / "run_success.png"))

            # The instance holds the materialization of multiome/bmmc_starter, from this run,
            # and this run is the only one (nothing else, e.g. the sensor, materialized it).
            records = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(ASSET), asset_partitions=[DATASET]), limit=10
            ).records
            assert [r.run_id for r in records] == [run_id]
            assert [r.run_id for r in instance.get_runs()] == [run_id]
            path_entry = records[0].asset_materialization.metadata.get("path")

        # The artifact landed in the temp warehouse.
        artifacts = sorted((ui_env["warehouse"] / "artifacts" / ASSET).glob(f"{DATASET}.*"))
        assert artifacts, f"no {ASSET}/{DATASET} artifact under {ui_env['warehouse']}"
        if path_entry is not None:  # the IO manager records where it wrote
            assert Path(str(path_entry.value)).resolve() in [a.resolve() for a in artifacts]
        assert all(a.stat().st_size > 0 for a in artifacts)

        # Back on the asset page the partition now shows as materialized.
        open_page(page, f"/assets/{ASSET}?view=partitions")
        expect(page.get_by_text("Materialized (1)")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Missing (0)")).to_be_visible()
        page.screenshot(path=str(shots / "asset_materialized.png"), full_page=True)


def test_the_asset_checks_show_on_the_asset_page(page, ui_env, dagster_dev, monkeypatch):
    """The input checks as Dagster evaluated them, on the asset's Checks tab (issue 30, part 4): the
    cCRE-vocabulary overlap of the peaks, evaluated by a real materialization in this instance."""
    import dagster as dg

    from multiome_assets.definitions import ASSETS, RESOURCES

    monkeypatch.setenv("MULTIOME_DATA_DIR", str(ui_env["data"]))
    monkeypatch.setenv("MULTIOME_WAREHOUSE", str(ui_env["warehouse"]))
    with dg.DagsterInstance.from_config(str(ui_env["home"])) as instance:
        result = dg.materialize(ASSETS, partition_key=DATASET, instance=instance, resources=RESOURCES,
                                selection=["multiome", "peak_vocab_matrix"])
        assert result.success
        (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "ccre_overlap"]
        assert evaluation.passed
    with screenshot_on_failure(page, ui_env["shots"], dagster_dev, "asset_checks"):
        open_page(page, "/assets/peak_vocab_matrix?view=checks")
        expect(page.get_by_text("ccre_overlap").first).to_be_visible(timeout=60_000)
        expect(page.get_by_text("Passed").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ui_env["shots"] / "asset_checks.png"), full_page=True)
