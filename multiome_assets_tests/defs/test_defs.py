"""Real Dagster materializations into a real warehouse, read back with real DuckDB."""
import os
import re
import subprocess
import sys
import textwrap

import dagster as dg
import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from multiome_assets import files, warehouse
from multiome_assets.cli import main as cli
from multiome_assets.definitions import ASSETS, RESOURCES, defs
from multiome_assets.defs.inputs import INPUTS

from ..conftest import write_dataset

FOUNDATION = ["candidate_sets", "gene_annotation", "gene_vocab_map", "multiome", "peak_vocab_matrix",
              "prior_edges", "randomized_candidate_sets"]


def _materialize(key, instance, selection="group:foundation"):
    if key not in instance.get_dynamic_partitions("dataset"):
        instance.add_dynamic_partitions("dataset", [key])
    return dg.materialize(ASSETS, partition_key=key, instance=instance, resources=RESOURCES,
                          selection=selection, raise_on_error=False)


def test_definitions_load_with_partitions():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(FOUNDATION) <= keys
    for name in FOUNDATION:
        assert graph.get(dg.AssetKey(name)).partitions_def.name == "dataset"


def test_foundation_assets_land_in_sql(data_root):
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize("bmmc_starter", instance)
    assert result.success
    got = warehouse.query("select dataset, window_bp, count(*) as n from candidate_sets group by all")
    assert got.dataset.tolist() == ["bmmc_starter"] and got.n[0] > 0 and got.window_bp[0] == 100_000
    tables = set(warehouse.list_tables())
    assert {"candidate_sets", "gene_annotation", "prior_edges", "gene_vocab_map"} <= tables
    # artifacts carry a content hash that matches the file on disk
    event = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "peak_vocab_matrix"][0]
    meta = event.materialization.metadata
    assert meta["sha256"].value == files.sha256(meta["path"].value)
    # the views file answers plain duckdb too
    import duckdb

    views = warehouse.warehouse_dir() / "warehouse.duckdb"
    con = duckdb.connect(str(views), read_only=True)
    con.execute("SET file_search_path = $p", {"p": str(views.parent)})  # what warehouse.connect does
    assert con.execute("select count(*) from prior_edges").fetchone()[0] == len(warehouse.read_table("prior_edges", "bmmc_starter"))
    con.close()


def test_run_succeeds_while_a_reader_holds_the_database(data_root):
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize("bmmc_starter", instance).success
    db = warehouse.warehouse_dir() / "warehouse.duckdb"
    reader = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from multiome_assets import warehouse
            con = warehouse.connect({str(db)!r})
            print(con.execute("select count(*) from candidate_sets").fetchone()[0], flush=True)
            sys.stdin.readline()
            print(con.execute("select count(*) from candidate_sets").fetchone()[0], flush=True)
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        before = int(reader.stdout.readline())
        result = _materialize("bmmc_starter", instance)  # rewrites every table and the views file
        assert result.success
        assert int(warehouse.query("select count(*) from candidate_sets").iloc[0, 0]) == before
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == before
    finally:
        reader.kill()
        reader.wait()


def test_failed_asset_leaves_nothing_half_written(data_root):
    folder = data_root / "datasets/bmmc_starter"
    (folder / "noprior.csv").write_text("source,target\nNOTATF,NOTAGENE\n")
    text = (folder / "dataset.yaml").read_text().replace("prior: dorothea", "prior: noprior.csv")
    (folder / "dataset.yaml").write_text(text)
    result = _materialize("bmmc_starter", dg.DagsterInstance.ephemeral())
    assert not result.success
    failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
    assert "noprior.csv: none of its 1 edges" in str(failure.event_specific_data.error)
    assert not warehouse.table_path("prior_edges", "bmmc_starter").exists()
    assert warehouse.table_path("candidate_sets", "bmmc_starter").exists()  # independent assets still built
    leftovers = [p for p in warehouse.warehouse_dir().rglob(".*") if p.is_file()]
    assert leftovers == []


def test_sensor_registers_new_dataset_folders(data_root):
    from multiome_assets.defs.sensors import dataset_folder_sensor

    (data_root / "datasets/Bad-Name").mkdir()
    (data_root / "datasets/Bad-Name/dataset.yaml").write_text("format: h5ad_pair\n")
    (data_root / "datasets/broken").mkdir()  # a valid key whose files are missing: it hides no other
    (data_root / "datasets/broken/dataset.yaml").write_text("format: h5ad_pair\nfiles: {rna: rna.h5ad, atac: atac.h5ad}\n")
    instance = dg.DagsterInstance.ephemeral()
    result = dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=RESOURCES))
    # the broken folder is registered too: its run fails with the message that names the file
    assert [r.partition_keys for r in result.dynamic_partitions_requests] == [["bmmc_starter", "broken"]]
    assert [r.partition_key for r in result.run_requests] == ["bmmc_starter", "broken"]
    # the inputs' versions come with the first tick (recorded before the run starts), then only changes
    observed = {(e.asset_key.to_user_string(), e.partition) for e in result.asset_events}
    assert ("input/prior", "bmmc_starter") in observed and len(observed) == len(INPUTS)  # none of broken's
    instance.add_dynamic_partitions("dataset", ["bmmc_starter", "broken"])
    for event in result.asset_events:  # as the daemon does
        instance.report_runless_asset_event(event)
    again = dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=RESOURCES))
    assert not again.run_requests and not again.dynamic_partitions_requests and not again.asset_events
    yaml_path = data_root / "datasets/bmmc_starter/dataset.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("candidate_window: 100000", "candidate_window: 50000"))
    edited = dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=RESOURCES))
    assert [e.asset_key.to_user_string() for e in edited.asset_events] == ["input/candidate_window"]
    assert not edited.run_requests


def test_cli_sql_and_register(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    runner = CliRunner()
    bad = runner.invoke(cli, ["register", "../x"])
    assert bad.exit_code == 1 and "invalid dataset key '../x'" in bad.output
    ok = runner.invoke(cli, ["register", "bmmc_starter"])
    assert ok.exit_code == 0, ok.output
    assert "bmmc_starter" in dg.DagsterInstance.get().get_dynamic_partitions("dataset")
    assert "inputs new or changed: cells, annotation" in ok.output  # recorded: later edits show as stale
    assert "inputs new or changed" not in runner.invoke(cli, ["register", "bmmc_starter"]).output
    assert _materialize("bmmc_starter", dg.DagsterInstance.get(), ["multiome", "gene_annotation"]).success
    n = len(warehouse.read_table("gene_annotation", "bmmc_starter"))
    out = runner.invoke(cli, ["sql", "select dataset, count(*) as n from gene_annotation group by 1", "--csv"])
    assert out.exit_code == 0 and out.output == f"dataset,n\nbmmc_starter,{n}\n"
    param = runner.invoke(cli, ["sql", "select count(*) as n from gene_annotation where gene = $g", "-p", "g", "RPL22", "--csv"])
    assert param.output == "n\n1\n"
    missing = runner.invoke(cli, ["sql", "select * from nope"])
    assert missing.exit_code == 1 and "nope does not exist" in missing.output


def test_cli_build_and_datasets_report_bad_folders(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    broken = data_root / "datasets" / "broken"
    broken.mkdir()
    (broken / "dataset.yaml").write_text("format: h5ad_pair\nfiles: {rna: rna.h5ad, atac: atac.h5ad}\n")
    misnamed = data_root / "datasets" / "PBMC-10k"  # not a partition key
    misnamed.mkdir()
    (misnamed / "dataset.yaml").write_text("format: h5ad_pair\n")
    runner = CliRunner()
    listing = runner.invoke(cli, ["datasets"])
    assert listing.exit_code == 0, listing.output
    assert "bmmc_starter\tnew\th5ad_pair" in listing.output  # one broken folder hides no other
    assert "broken\tnew\tinvalid:" in listing.output and "file 'rna.h5ad' does not exist" in listing.output
    assert "PBMC-10k\tnew\tinvalid: invalid dataset key 'PBMC-10k'" in listing.output
    build = runner.invoke(cli, ["build", "--dataset", "broken"])
    assert build.exit_code == 1 and "broken/dataset.yaml: file 'rna.h5ad' does not exist" in build.output
    assert build.exception is None or isinstance(build.exception, SystemExit)  # a message, not a traceback
    for select, problem in (("key:nope", "matches no asset"), ("(((", "Invalid selection")):
        bad = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", select])
        assert bad.exit_code == 1 and problem in bad.output and "Traceback" not in bad.output, bad.output
    # only an artifact built: no tables to count yet, and the summary says so without failing
    only_artifact = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "multiome"])
    assert only_artifact.exit_code == 0, only_artifact.output
    assert "== built" in only_artifact.output


def test_cli_build_selects_whole_steps_and_takes_run_config(data_root, bmmc, tmp_path, monkeypatch):
    from multiome_assets.cli import _selection

    both = [dg.AssetKey("grn_metrics"), dg.AssetKey("grn_regulator_enrichment")]
    assert _selection("grn_metrics") == both  # one output of the grn_evaluation step brings the other
    assert _selection("grn_evaluation") == both  # the step's name, as the launchpad shows it
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    runner = CliRunner()
    # run config from a file, as in the launchpad
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  candidate_sets:\n    config: {window: 5000}\n")
    ok = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "+candidate_sets", "--config", str(config)])
    assert ok.exit_code == 0, ok.output
    # a progress line instead of Dagster's log (not a terminal here: a line per change, the last one final)
    assert re.search(r"^bmmc_starter \[3/3 steps\] finished · 0m\d\ds$", ok.output, re.M), ok.output
    assert "STEP_START" not in ok.output and "DEBUG" not in ok.output
    assert warehouse.query("select distinct window_bp from candidate_sets").window_bp.tolist() == [5000]
    # --stale: what is built is skipped, what is missing is built, nothing upstream of it again
    again = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "+candidate_sets", "--stale"])
    assert again.exit_code == 0 and "== bmmc_starter: up to date" in again.output, again.output
    missing = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "+gene_vocab_map", "--stale"])
    assert missing.exit_code == 0 and "== materializing bmmc_starter: gene_vocab_map\n" in missing.output, missing.output
    again = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "+candidate_sets", "--stale",
                                "--config", str(config)])  # config of a step --stale skips is not an error
    assert again.exit_code == 0 and "== bmmc_starter: up to date" in again.output, again.output
    config.write_text("ops:\n  candidate_set:\n    config: {window: 5000}\n")  # a typo in the step
    typo = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "candidate_sets", "--config", str(config)])
    assert typo.exit_code == 1 and "run.yaml: no step named candidate_set" in typo.output, typo.output
    config.write_text("ops:\n  candidate_sets:\n    config: {windw: 5000}\n")  # a typo in a setting
    typo = runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "candidate_sets", "--config", str(config)])
    assert typo.exit_code == 1 and "run.yaml" in typo.output and "windw" in typo.output, typo.output
    # a failure inside a step ends with the error that names the file, not just "failed"
    rna, atac = bmmc
    rna = rna.copy()
    x = sp.csr_matrix(rna.X, dtype=np.float32)
    x.data[0] = np.nan
    rna.X = x
    write_dataset(data_root, "with_nan", rna, atac)
    bad = runner.invoke(cli, ["build", "--dataset", "with_nan", "--select", "multiome"])
    assert bad.exit_code == 1
    assert bad.output.rstrip().splitlines()[-1].endswith("with_nan/rna.h5ad: X holds 1 NaN or infinite values"), bad.output[-800:]


def test_edited_inputs_rebuild_what_reads_them(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    folder = data_root / "datasets" / "bmmc_starter"
    prior = folder / "prior.csv"
    prior.write_text((data_root / "reference" / "dorothea_human_ABC.csv").read_text())
    yaml_path = folder / "dataset.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("prior: dorothea", "prior: prior.csv"))
    runner = CliRunner()
    select = ["build", "--dataset", "bmmc_starter", "--select", "+key:prior_edges or +key:candidate_sets", "--stale"]
    first = runner.invoke(cli, select)
    assert first.exit_code == 0 and "inputs new or changed: cells, annotation, prior" in first.output, first.output
    edges = len(warehouse.read_table("prior_edges", "bmmc_starter"))
    assert "== bmmc_starter: up to date" in runner.invoke(cli, select).output
    assert runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "prior_versions"]).exit_code == 0

    # a new prior: prior_edges again, not the cells it maps onto
    rows = prior.read_text().splitlines()
    prior.write_text("\n".join(rows[: len(rows) // 2]) + "\n")
    again = runner.invoke(cli, select)
    assert again.exit_code == 0, again.output
    assert "inputs new or changed: prior\n" in again.output
    assert "== materializing bmmc_starter: prior_edges\n" in again.output, again.output
    assert len(warehouse.read_table("prior_edges", "bmmc_starter")) < edges

    # what reads prior_edges is stale once prior_edges has the new prior (Dagster alone would
    # leave it fresh: it does not carry a partitioned input's version downstream)
    from multiome_assets.build import out_of_date

    after = [dg.AssetKey("prior_versions")]
    with dg.DagsterInstance.get() as instance:
        assert out_of_date(defs, after, "bmmc_starter", instance) == after
    assert runner.invoke(cli, ["build", "--dataset", "bmmc_starter", "--select", "prior_versions"]).exit_code == 0
    with dg.DagsterInstance.get() as instance:
        assert out_of_date(defs, after, "bmmc_starter", instance) == []
    # an edit that changes no edge among the dataset's genes leaves what follows prior_edges fresh
    prior.write_text(prior.read_text() + "STAT3,A,NOT_A_GENE_OF_THIS_DATASET,1\n")
    again = runner.invoke(cli, select)
    assert "== materializing bmmc_starter: prior_edges\n" in again.output, again.output
    with dg.DagsterInstance.get() as instance:
        assert out_of_date(defs, after, "bmmc_starter", instance) == []

    # a new window in dataset.yaml: candidate_sets again, with it
    yaml_path.write_text(yaml_path.read_text().replace("candidate_window: 100000", "candidate_window: 5000"))
    again = runner.invoke(cli, select)
    assert "== materializing bmmc_starter: candidate_sets\n" in again.output, again.output
    assert warehouse.query("select distinct window_bp from candidate_sets").window_bp.tolist() == [5000]


OPEN_INSTANCE = """
import sys, time
start = float(sys.argv[1])
from multiome_assets.cli import _instance
time.sleep(max(0.0, start - time.time()))  # every process past its imports, then all at once
instance = _instance()
instance.add_dynamic_partitions("dataset", [sys.argv[2]])
"""


def test_processes_opening_a_fresh_instance_at_once_all_open_it(tmp_path):
    """Four processes (four `build` commands started together on a new machine) create the Dagster
    instance of one fresh home at the same moment: none fails in Dagster's schema set-up, and the
    home's dagster.yaml holds each setting once."""
    import time

    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "home")}
    start = str(time.time() + 8)
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_INSTANCE, start, f"d{i}"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(4)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, outputs
    config = (tmp_path / "home" / "dagster.yaml").read_text()
    assert config.count("telemetry:") == config.count("nux:") == 1
    instance = dg.DagsterInstance.from_config(str(tmp_path / "home"))
    assert sorted(instance.get_dynamic_partitions("dataset")) == ["d0", "d1", "d2", "d3"]


READER = """
import json, sys, threading, time
import duckdb
from multiome_assets import warehouse
views = warehouse.warehouse_dir() / "warehouse.duckdb"
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
while not views.exists() and not stop.is_set():
    time.sleep(0.05)
session = warehouse.connect(views)  # a SQL session held open all along
seen, reads = set(), 0


def read_all(session):
    global reads
    for table in ("gene_annotation", "prior_edges", "candidate_sets"):
        sql = f"select dataset, count(*) from {table} group by 1"
        try:
            rows = session.execute(sql).fetchall() if session else warehouse.query(sql).values.tolist()
        except duckdb.CatalogException:
            continue  # not built yet (or not among the open session's views yet)
        seen.update((table, d, int(n)) for d, n in rows)
        reads += 1


while not stop.is_set():
    read_all(session)
    read_all(None)
read_all(None)  # the builds have ended: every table is there
print(json.dumps({"seen": sorted(seen), "reads": reads}), flush=True)
"""


@pytest.mark.slow  # two build processes of every asset
def test_two_builds_at_once_while_a_sql_session_reads(tmp_path, monkeypatch):
    """Two `multiome-assets build` processes, one dataset each, at the same time (one Dagster
    instance), while a third process holds a DuckDB session open and queries: both builds succeed,
    and every read sees each dataset's table whole (its final row count) or not at all."""
    import json

    from ..conftest import two_priors_data_dir

    two_priors_data_dir(tmp_path / "data", copy_starter=False)
    env = {**os.environ, "MULTIOME_DATA_DIR": str(tmp_path / "data"), "MULTIOME_WAREHOUSE": str(tmp_path / "warehouse"),
           "DAGSTER_HOME": str(tmp_path / "home")}
    monkeypatch.setenv("MULTIOME_WAREHOUSE", env["MULTIOME_WAREHOUSE"])
    reader = subprocess.Popen([sys.executable, "-c", READER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    builds = [subprocess.Popen([sys.executable, "-m", "multiome_assets.cli", "build", "--dataset", key,
                                "--select", "key:multiome or key:gene_annotation or key:prior_edges or key:candidate_sets"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for key in ("bmmc_starter", "bmmc_collectri")]
    try:
        outputs = [b.communicate(timeout=600)[0] for b in builds]
        reader.stdin.write("\n")
        reader.stdin.flush()
        observed = json.loads(reader.communicate(timeout=120)[0])
    finally:
        for process in (*builds, reader):
            process.kill()
    assert [b.returncode for b in builds] == [0, 0], outputs
    final = {(t, d, len(warehouse.read_table(t, d))) for t in ("gene_annotation", "prior_edges", "candidate_sets")
             for d in ("bmmc_starter", "bmmc_collectri")}
    assert observed["reads"] > 6 and {tuple(s) for s in observed["seen"]} == final


def test_the_resources_alone_say_where_data_and_results_live(tmp_path, monkeypatch):
    """Set on the resources, the data folder and the warehouse serve every read and write; the
    environment variables (here pointing nowhere) are only the resources' defaults."""
    import shutil

    from multiome_assets.defs.io_manager import WarehouseIOManager
    from multiome_assets.defs.resources import DatasetCatalog
    from multiome_assets.defs.sensors import dataset_folder_sensor

    from ..conftest import BUNDLED

    data, results = tmp_path / "elsewhere", tmp_path / "results"
    (data / "datasets").mkdir(parents=True)
    (data / "reference").symlink_to(BUNDLED / "reference")
    shutil.copytree(BUNDLED / "datasets" / "bmmc_starter", data / "datasets" / "bmmc_starter")
    monkeypatch.setenv("MULTIOME_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("MULTIOME_WAREHOUSE", str(tmp_path / "not_here"))
    resources = {**RESOURCES, "datasets": DatasetCatalog(data_dir=str(data)),
                 "warehouse": WarehouseIOManager(root=str(results))}
    instance = dg.DagsterInstance.ephemeral()
    # the folder sensor finds the dataset in the catalog's folder and hashes its inputs there
    found = dataset_folder_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert [r.partition_key for r in found.run_requests] == ["bmmc_starter"]
    assert {e.asset_key.path[-1] for e in found.asset_events} >= {"cells", "prior", "ccre_vocabulary"}
    instance.add_dynamic_partitions("dataset", ["bmmc_starter"])
    result = dg.materialize(ASSETS, partition_key="bmmc_starter", instance=instance, resources=resources,
                            selection="group:foundation")
    assert result.success
    assert warehouse.query("select count(*) n from gene_vocab_map", root=results).n[0] > 0
    assert (results / "artifacts" / "peak_vocab_matrix" / "bmmc_starter.npz").is_file()
    assert not (tmp_path / "not_here").exists() and not (tmp_path / "nowhere").exists()


def test_the_instance_the_project_writes_opens_on_the_work(tmp_path, monkeypatch):
    """Telemetry off and no first-run dialog, in a new DAGSTER_HOME and added to an existing one."""
    import yaml

    from multiome_assets.cli import instance_home

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "new"))
    assert yaml.safe_load((instance_home() / "dagster.yaml").read_text()) == {
        "telemetry": {"enabled": False}, "nux": {"enabled": False}}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_retries:\n  enabled: true")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "old"))
    config = yaml.safe_load((instance_home() / "dagster.yaml").read_text())
    assert config["nux"] == {"enabled": False} and config["run_retries"] == {"enabled": True}
    assert dg.DagsterInstance.get().get_settings("nux") == {"enabled": False}  # Dagster reads it


def test_input_checks_show_a_dataset_of_another_genome(data_root, bmmc):
    """The asset checks a user sees in the UI, through Dagster's own check evaluations: the bundled
    BMMC passes the genome checks and warns that its 600-gene panel holds few prior edges; the same
    cells with their peaks moved 1.2 Mb along the genome (another assembly's coordinates) fail the
    cCRE overlap as an error."""
    rna, atac = bmmc
    moved = atac.copy()
    parts = moved.var_names.str.extract(r"^(.+)-(\d+)-(\d+)$")  # chr1-..., and an alt contig GL000205.2-...
    moved.var_names = (parts[0] + "-" + (parts[1].astype(int) + 1_234_567).astype(str) + "-"
                       + (parts[2].astype(int) + 1_234_567).astype(str)).to_numpy()
    write_dataset(data_root, "moved", rna, moved, rna_counts_layer="counts")
    instance = dg.DagsterInstance.ephemeral()
    verdicts = {}
    for key in ("bmmc_starter", "moved"):
        result = _materialize(key, instance)
        assert result.success  # a failed check is shown, the materialization stands
        verdicts[key] = {e.check_name: e for e in result.get_asset_check_evaluations()}
    ok = verdicts["bmmc_starter"]
    assert ok["ccre_overlap"].passed and ok["genes_matched"].passed
    assert not ok["prior_coverage"].passed and ok["prior_coverage"].severity == dg.AssetCheckSeverity.WARN
    bad = verdicts["moved"]["ccre_overlap"]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["value"].value < 0.5 < ok["ccre_overlap"].metadata["value"].value
