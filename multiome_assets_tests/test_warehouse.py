"""The warehouse under faults, with real processes and signals: readers see whole tables while
another process rewrites one, a writer killed mid-write leaves the previous version, a full disk or
a folder that cannot be written fails naming the path and leaves nothing half-written."""
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from multiome_assets import warehouse

ROWS = 2_000_000
WRITER = """
import resource, signal, sys
import numpy as np, pandas as pd
from multiome_assets import warehouse
rows, times, limit = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if limit:  # a disk that fills up: writes past `limit` bytes fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
for i in range(times):  # rewrite partition d2 again and again, a new version each time
    noise = np.random.default_rng(i).random(rows)  # incompressible: ~16 MB a version
    warehouse.write_table("scores", "d2", pd.DataFrame({"score": np.full(rows, float(i + 1)), "noise": noise}))
    print("wrote", i, flush=True)
print("done", flush=True)
"""


@pytest.fixture
def scores(tmp_path, monkeypatch):
    """Table `scores`: partition d1 (1 row) and d2 (ROWS rows of 0.0)."""
    root = tmp_path / "warehouse"
    monkeypatch.setenv("MULTIOME_WAREHOUSE", str(root))
    warehouse.write_table("scores", "d1", pd.DataFrame({"score": [1.0]}))
    warehouse.write_table("scores", "d2", pd.DataFrame({"score": np.zeros(ROWS), "noise": np.zeros(ROWS)}))
    return root / "tables" / "scores"


def _writer(times: int, limit: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(ROWS), str(times), str(limit)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _whole(folder) -> None:
    """Every partition reads whole, through the views, with one version of d2."""
    counts = warehouse.query("select dataset, count(*) n, count(distinct score) versions from scores group by 1 order by 1")
    assert counts.n.tolist() == [1, ROWS] and counts.versions.tolist() == [1, 1]
    assert sorted(p.name for p in folder.glob("*.parquet")) == ["d1.parquet", "d2.parquet"]


def test_readers_see_whole_tables_while_another_process_rewrites_one(scores):
    """Two steps run at once under the multiprocess executor: one rewrites its table while another
    (or a SQL session) reads the views. A reader sees the previous version or the new one."""
    writer = _writer(times=15)
    counts = set()
    try:
        while writer.poll() is None:
            counts.add(int(warehouse.query("select count(*) n from scores").n[0]))
    finally:
        writer.kill()
    assert writer.returncode == 0 and writer.stdout.read().splitlines()[-1] == "done"
    assert counts == {ROWS + 1}  # every read: d1 whole, d2 whole
    _whole(scores)
    assert not list(scores.glob(".*"))  # no temp file left


def test_a_writer_killed_mid_write_leaves_the_previous_version(scores):
    writer = _writer(times=1000)
    try:
        assert writer.stdout.readline().startswith("wrote 0")
        start = time.monotonic()
        assert writer.stdout.readline().startswith("wrote 1")
        period = time.monotonic() - start  # one version's write
        assert writer.stdout.readline().startswith("wrote 2")
        time.sleep(period / 2)  # halfway through writing the next one
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    finally:
        writer.kill()
    assert writer.returncode == -signal.SIGKILL
    _whole(scores)  # a version the writer finished, whole; its half-written file (if any) unread
    assert warehouse.read_table("scores", "d2").score.nunique() == 1
    warehouse.write_table("scores", "d2", pd.DataFrame({"score": [7.0]}))  # and the next write works
    assert warehouse.query("select sum(score) s from scores where dataset = 'd2'").s[0] == 7.0


def test_a_full_disk_fails_naming_the_file_and_keeps_the_previous_version(scores):
    before = (scores / "d2.parquet").read_bytes()
    writer = _writer(times=1, limit=1 << 20)  # the new version needs ~16 MB
    _, err = writer.communicate(timeout=120)
    assert writer.returncode == 1
    last = err.splitlines()[-1]
    assert f"cannot write {scores / 'd2.parquet'}: " in last and "File too large" in last, last
    assert (scores / "d2.parquet").read_bytes() == before
    assert not list(scores.glob(".*"))
    _whole(scores)


def test_a_warehouse_that_cannot_be_written_fails_naming_the_path(tmp_path, monkeypatch):
    blocked = tmp_path / "warehouse"
    blocked.write_text("a file where the warehouse folder should be\n")
    monkeypatch.setenv("MULTIOME_WAREHOUSE", str(blocked))
    with pytest.raises(NotADirectoryError, match=rf"cannot write {blocked}/tables/scores/d1.parquet: Not a directory"):
        warehouse.write_table("scores", "d1", pd.DataFrame({"score": [1.0]}))
    assert blocked.read_text() == "a file where the warehouse folder should be\n"


def test_a_moved_warehouse_folder_still_reads(tmp_path):
    """The views file names its tables relative to its folder: moved elsewhere, it answers the same."""
    import shutil

    import duckdb

    old = tmp_path / "old"
    warehouse.write_table("edge_scores", "d1", pd.DataFrame({"tf": ["A", "B"], "target": ["C", "C"], "score": [1.0, 2.0]}), old)
    new = shutil.move(str(old), str(tmp_path / "elsewhere" / "wh"))
    con = warehouse.connect(f"{new}/warehouse.duckdb")
    assert con.execute("select count(*), sum(score) from edge_scores").fetchone() == (2, 3.0)
    assert con.execute("select source from edge_scores_decoupler order by weight").fetchall() == [("A",), ("B",)]
    con.close()
    plain = duckdb.connect(f"{new}/warehouse.duckdb", read_only=True)  # plain DuckDB: set the search path yourself
    plain.execute("SET file_search_path = $p", {"p": new})
    assert plain.execute("select count(*) from edge_scores").fetchone() == (2,)


def test_categorical_columns_read_as_text_in_sql_and_in_pandas(tmp_path):
    """edge_scores is built with categorical TF, target and method columns (a 10x run's ~100 M
    rows): SQL and pandas read them back as text, sorted as text, not in the categories' order; the
    dataset column holds the partition's key on every row."""
    genes = pd.Index(["TF1", "G2", "G1"])
    table = pd.DataFrame({"method": pd.Categorical(["m", "m", "b"]),
                          "tf": pd.Categorical.from_codes([0, 0, 0], categories=genes),
                          "target": pd.Categorical.from_codes([1, 2, 2], categories=genes), "score": [0.5, 0.2, 0.9]})
    warehouse.write_table("edge_scores", "d1", table, tmp_path)
    warehouse.write_table("names", "d1", pd.DataFrame({"gene": ["G1"]}), tmp_path)
    con = warehouse.connect(f"{tmp_path}/warehouse.duckdb")
    types = dict(con.execute("select column_name, column_type from (describe edge_scores)").fetchall())
    assert types["tf"] == types["target"] == types["method"] == types["dataset"] == "VARCHAR"
    assert con.execute("select e.dataset, e.method, e.score from edge_scores e join names n on e.target = n.gene "
                       "order by e.score").fetchall() == [("d1", "m", 0.2), ("d1", "b", 0.9)]
    back = warehouse.read_table("edge_scores", "d1", tmp_path)
    assert back.tf.dtype == back.target.dtype == object
    assert back.sort_values("target").target.tolist() == ["G1", "G1", "G2"]
    assert back.drop(columns="dataset").astype(str).equals(table.astype(str))
    # what tf_cre_gene asks the IO manager for: one method's rows, read without the others
    only = warehouse.read_table("edge_scores", "d1", tmp_path, where={"method": "m"})
    assert only.method.tolist() == ["m", "m"] and only.target.tolist() == ["G2", "G1"]
    assert warehouse.read_table("edge_scores", "d1", tmp_path, where={"method": "none"}).empty
