"""The warehouse on an object store: a local S3-compatible server (moto's, a real process speaking the
S3 protocol over HTTP) through s3fs, and fsspec's in-memory filesystem. Every artifact kind and a
table round-trip, DuckDB reads the tables in place, Dagster materializes into the bucket, and a
reader never sees a half-written table while another process rewrites it."""
import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import anndata as ad
import dagster as dg
import matplotlib
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner

from multiome_assets import files, warehouse
from multiome_assets.cli import main as cli
from multiome_assets.grn.artifacts import GeneEmbeddings
from multiome_assets.models import resume
from multiome_assets.readers import Multiome

matplotlib.use("Agg")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server in its own process group, stopped (SIGKILL) with everything it started."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert server.poll() is None and time.monotonic() < deadline, "moto server did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)


def _bucket() -> str:
    import s3fs

    name = f"warehouse-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(name)
    return name


@pytest.fixture(params=["s3", "memory"])
def remote_root(request, monkeypatch):
    """MULTIOME_WAREHOUSE set to a fresh bucket on the S3 server, or a fresh in-memory folder."""
    if request.param == "s3":
        request.getfixturevalue("s3_env")
        url = f"s3://{_bucket()}/warehouse"
    else:
        url = f"memory://warehouse-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("MULTIOME_WAREHOUSE", url)
    root = warehouse.warehouse_dir()
    assert files.is_remote(root) and str(root) == url
    return root


def test_every_artifact_kind_round_trips(remote_root, bmmc):
    rna, atac = (m[:40].copy() for m in bmmc)
    table = pd.DataFrame({"tf": ["A", "B"], "score": [0.5, 0.25]})
    assert warehouse.write_table("edges", "d1", table) == remote_root / "tables/edges/d1.parquet"
    pd.testing.assert_frame_equal(warehouse.read_table("edges", "d1"), table.assign(dataset="d1")[["dataset", "tf", "score"]])
    assert warehouse.query("select sum(score) s from edges where dataset = 'd1'").s[0] == 0.75  # DuckDB, in place
    assert warehouse.list_tables() == ["edges"] and (remote_root / "warehouse.duckdb").exists()

    paired = warehouse.read_artifact(warehouse.write_artifact("multiome", "d1", Multiome(rna, atac)))
    assert (paired.rna.X != rna.X).nnz == 0 and paired.atac.obs_names.equals(atac.obs_names)
    scenarios = mudata.MuData({"s1": ad.AnnData(sp.random(5, 3, density=0.5, format="csr", dtype=np.float32))})
    assert warehouse.read_artifact(warehouse.write_artifact("profiles", "d1", scenarios)).mod["s1"].shape == (5, 3)
    matrix = sp.random(30, 20, density=0.1, format="csr", dtype=np.float32, random_state=0)
    assert (warehouse.read_artifact(warehouse.write_artifact("matrix", "d1", matrix)) != matrix).nnz == 0
    embeddings = GeneEmbeddings(["G1", "G2"], {"all": np.arange(3)}, {"full": {"all": np.eye(2, dtype=np.float32)}})
    warehouse.write_artifact("embeddings", "d1", embeddings)
    got = warehouse.read_artifact(warehouse.find_artifact("embeddings", "d1"))
    assert got.genes == ["G1", "G2"] and np.array_equal(got.embeddings["full"]["all"], np.eye(2))

    # a new kind for the same asset replaces the old file
    warehouse.write_artifact("matrix", "d1", embeddings)
    assert [p.name for p in (remote_root / "artifacts/matrix").glob("*")] == ["d1.pt"]

    import matplotlib.pyplot as plt

    figure = remote_root / "artifacts/curves/d1.png"
    files.save_figure(plt.figure(figsize=(4, 3)), figure)
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a training checkpoint saved to and resumed from the store
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    streams = dict(rng=np.random.default_rng(0), configs={"c": {"lr": 1}}, data="cells")
    checkpoint = remote_root / "artifacts/checkpoints/d1.pt"
    resume.save(checkpoint, model=model, opt=opt, sched=sched, state={"epoch": 3}, **streams)
    fresh = torch.nn.Linear(3, 2)
    assert resume.resume(checkpoint, model=fresh, opt=torch.optim.Adam(fresh.parameters()),
                         sched=torch.optim.lr_scheduler.StepLR(opt, 1), **streams) == {"epoch": 3}
    assert torch.equal(fresh.weight, model.weight)
    files.remove(checkpoint)
    assert not checkpoint.exists()
    assert not any(p.name.startswith(".") for p in remote_root.rglob("*"))  # no temp object was published


def test_a_missing_bucket_fails_naming_the_path(s3_env, monkeypatch):
    monkeypatch.setenv("MULTIOME_WAREHOUSE", "s3://no-such-bucket-here/warehouse")
    with pytest.raises(OSError, match="cannot write s3://no-such-bucket-here/warehouse/tables/edges/d1.parquet: "):
        warehouse.write_table("edges", "d1", pd.DataFrame({"score": [1.0]}))


WRITER = """
import sys
import numpy as np, pandas as pd
from multiome_assets import warehouse
rows, times = int(sys.argv[1]), int(sys.argv[2])
for i in range(times):
    warehouse.write_table("scores", "d2", pd.DataFrame({"score": np.full(rows, float(i + 1))}))
print("done", flush=True)
"""


@pytest.mark.slow  # real processes and a materialization
def test_readers_see_whole_tables_while_another_process_rewrites_one_on_s3(s3_env, monkeypatch):
    monkeypatch.setenv("MULTIOME_WAREHOUSE", f"s3://{_bucket()}/warehouse")
    rows = 300_000
    warehouse.write_table("scores", "d1", pd.DataFrame({"score": [1.0]}))
    warehouse.write_table("scores", "d2", pd.DataFrame({"score": np.zeros(rows)}))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(rows), "8"], stdout=subprocess.PIPE, text=True)
    seen = set()
    try:
        while writer.poll() is None:
            got = warehouse.query("select count(*) n, count(distinct score) versions from scores where dataset = 'd2'")
            seen.add((int(got.n[0]), int(got.versions[0])))
    finally:
        writer.kill()
    assert writer.returncode == 0 and writer.stdout.read().strip() == "done"
    assert seen == {(rows, 1)}  # every read: one whole version of d2
    assert warehouse.read_table("scores", "d2").score.unique().tolist() == [8.0]


@pytest.mark.slow  # real processes and a materialization
def test_dagster_materializes_into_the_bucket_and_sql_reads_it(data_root, s3_env, monkeypatch, tmp_path):
    from multiome_assets.definitions import ASSETS, RESOURCES

    bucket = _bucket()
    monkeypatch.setenv("MULTIOME_WAREHOUSE", f"s3://{bucket}/warehouse")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", ["bmmc_starter"])
    result = dg.materialize(ASSETS, partition_key="bmmc_starter", instance=instance, resources=RESOURCES,
                            selection=["multiome", "gene_annotation", "prior_edges"])
    assert result.success
    meta = {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert meta["multiome"]["path"].value == f"s3://{bucket}/warehouse/artifacts/multiome/bmmc_starter.h5mu"
    assert meta["multiome"]["sha256"].value == files.sha256(meta["multiome"]["path"].value)
    assert not (tmp_path / "warehouse").exists()  # nothing went to a local folder
    out = CliRunner().invoke(cli, ["sql", "select dataset, count(*) as n from prior_edges group by 1", "--csv"])
    assert out.exit_code == 0, out.output
    assert out.output == f"dataset,n\nbmmc_starter,{len(warehouse.read_table('prior_edges', 'bmmc_starter'))}\n"
