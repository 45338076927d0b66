"""Where results live: Parquet per table and partition, artifacts as files, DuckDB views over both.

Layout under the warehouse root (default `data/warehouse/`):
    tables/<table>/<dataset>.parquet      one file per asset and dataset partition
    artifacts/<asset>/<dataset>.<ext>     AnnData/MuData (.h5mu), sparse (.npz), typed artifacts (.pt)
    warehouse.duckdb                      views only, paths relative to the folder: `warehouse.connect()`

The root is a local folder, or any fsspec URL (`s3://bucket/prefix`, `gs://...`, `memory://...`):
set `MULTIOME_WAREHOUSE` (or the io manager's `root`). Paths under a remote root are
universal-pathlib `UPath`s; every function here takes either kind.

Writers never open a DuckDB file for writing while they run: each write is a local temp file,
published whole: an atomic rename on a local disk, one upload on an object store (S3, GCS and
Azure make an object visible only once its upload completes). The views file is rebuilt the same
way. So a run never waits on a lock held by an open SQL session, and a reader sees each table
file either whole or in its previous version.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import pickle
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.dataset import data_dir
from multiome_assets.files import as_path, atomic_path, is_remote, local_file

ARTIFACT_PACKAGE = "multiome_assets."  # the only modules whose types an artifact file may name


def warehouse_dir() -> Path:
    """The warehouse root: $MULTIOME_WAREHOUSE (a folder or an fsspec URL), else data/warehouse."""
    return as_path(os.environ.get("MULTIOME_WAREHOUSE") or data_dir() / "warehouse")


def content_hash(value) -> str:
    """sha256 of what a table, a sparse or dense matrix, or paired modalities hold (values, names),
    not of how they are laid out in a file."""
    h = hashlib.sha256()

    def add(part) -> None:
        if isinstance(part, pd.DataFrame):
            h.update(repr(list(part.columns)).encode())
            h.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
        elif isinstance(part, pd.Index):
            h.update(pd.util.hash_pandas_object(part.to_series(), index=False).to_numpy().tobytes())
        elif sp.issparse(part):
            m = sp.csr_matrix(part)
            h.update(repr(m.shape).encode())
            for array in (m.indptr, m.indices, m.data):
                h.update(np.ascontiguousarray(array).tobytes())
        elif isinstance(part, np.ndarray):
            h.update(repr(part.shape).encode() + np.ascontiguousarray(part).tobytes())
        elif hasattr(part, "obs_names"):  # AnnData: values, and the cells' and features' annotations
            for piece in (part.X, part.obs, part.var, *part.layers.values()):
                add(piece)
        elif hasattr(part, "rna") and hasattr(part, "atac"):  # Multiome
            add(part.rna)
            add(part.atac)
        else:
            raise TypeError(f"content_hash: no rule for {type(part).__name__}")

    add(value)
    return h.hexdigest()


def table_path(table: str, dataset: str, root: Path | None = None) -> Path:
    return (root or warehouse_dir()) / "tables" / table / f"{dataset}.parquet"


def write_table(table: str, dataset: str, df: pd.DataFrame, root: Path | None = None) -> Path:
    """Write one partition of a table (a `dataset` column is added) and refresh the views file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = table_path(table, dataset, root)
    columns = pa.Table.from_pandas(df.drop(columns=["dataset"]) if "dataset" in df else df, preserve_index=False)
    # the dataset's name as one Arrow array, not a Python string per row (edge_scores of a 10x run: ~100 M rows)
    columns = columns.add_column(0, "dataset", pa.repeat(pa.scalar(dataset), len(df)))
    schema = _text_schema(columns.schema)
    with atomic_path(path, suffix=".tmp") as tmp:  # not *.parquet: the views read every *.parquet of the folder
        with pq.ParquetWriter(tmp, schema) as writer:
            for start in range(0, max(len(columns), 1), WRITE_ROWS):
                writer.write_table(columns.slice(start, WRITE_ROWS).cast(schema))
    refresh_views(root)
    return path


WRITE_ROWS = 4_000_000  # rows whose categoricals are made text at once (~100 MB of strings)


def _text_schema(schema):
    """`schema` with categorical (dictionary) text columns as the text they hold, for pandas as for SQL:
    a table built with categoricals to save memory reads back as strings, sorted as strings."""
    import json

    import pyarrow as pa

    coded = {f.name for f in schema if pa.types.is_dictionary(f.type) and pa.types.is_string(f.type.value_type)}
    if not coded:
        return schema
    meta = json.loads(schema.metadata[b"pandas"])
    for column in meta["columns"]:
        if column["name"] in coded:
            column.update(pandas_type="unicode", numpy_type="object", metadata=None)
    fields = [pa.field(f.name, f.type.value_type) if f.name in coded else f for f in schema]
    return pa.schema(fields, metadata={**schema.metadata, b"pandas": json.dumps(meta).encode()})


def read_table(table: str, dataset: str, root: Path | None = None, where: dict | None = None) -> pd.DataFrame:
    return read_parquet(table_path(table, dataset, root), where)


def read_parquet(path: Path, where: dict | None = None) -> pd.DataFrame:
    """A table partition as pandas; `where` ({column: value}) reads only the rows equal to each value,
    row group by row group (edge_scores of a 10x run: 93 M rows, 16 GB whole as Python strings)."""
    filters = [(column, "==", value) for column, value in (where or {}).items()] or None

    def read():
        with path.open("rb") as f:
            return pd.read_parquet(f, filters=filters)

    return reread_if_replaced(read)


def reread_if_replaced(read, attempts: int = 5):
    """`read()`, again if an object it read was replaced meanwhile. On an object store a file is read
    in ranges; s3fs/gcsfs check each range's version and raise FileExpired rather than mix two
    versions, so a reader that retries sees a whole table, old or new, like a local reader does."""
    for attempt in range(attempts):
        try:
            return read()
        except Exception as e:
            if "FileExpired" not in f"{type(e).__name__}: {e}" or attempt == attempts - 1:
                raise


def list_tables(root: Path | None = None) -> list[str]:
    return sorted({p.parent.name for p in ((root or warehouse_dir()) / "tables").glob("*/*.parquet")})


# Views over the tables, created when the table they read exists.
DERIVED_VIEWS = {
    # every exported GRN with decoupler's column names, for decoupler.mt.* / decoupler.run_* as `net`
    "edge_scores_decoupler": ("edge_scores", "SELECT * RENAME (tf AS source, score AS weight) FROM edge_scores"),
    # the triplets as TF -> gene regulons (a pair's best triplet), one net per cell type, link method and evidence
    "tf_cre_gene_decoupler": ("tf_cre_gene", "SELECT dataset, cell_type, link_method, tf_cre_evidence, source, target, "
                              "max(score) AS weight, count(*) AS n_cres FROM tf_cre_gene GROUP BY ALL"),
}


def create_views(con: duckdb.DuckDBPyConnection, root: Path | None = None, relative: bool = False) -> list[str]:
    """One view per table over all its partitions' Parquet files, and the DERIVED_VIEWS on them.
    `relative`: the views read `tables/...` relative to DuckDB's `file_search_path` (the views
    file's own folder, see `connect`), so a moved warehouse folder still reads."""
    root = root or warehouse_dir()
    if is_remote(root):
        # DuckDB reads through the root's fsspec filesystem, not its own httpfs: httpfs reads a file in
        # ranges without pinning its version, so a table replaced mid-read fails or mixes two versions
        # (docs/cluster.md); s3fs checks every range's ETag (FileExpired; see reread_if_replaced)
        con.register_filesystem(root.fs)
    tables = list_tables(root)
    if relative:  # views are bound when created: the relative paths must resolve now too
        con.execute("SET file_search_path = $p", {"p": str(Path(root).resolve())})
    for table in tables:
        glob = (f"tables/{table}/*.parquet" if relative else str(root / "tables" / table / "*.parquet")).replace("'", "''")
        con.execute(
            f'CREATE OR REPLACE VIEW "{table}" AS '
            f"SELECT * FROM read_parquet('{glob}', union_by_name = true)"
        )
    for view, (table, sql) in DERIVED_VIEWS.items():
        if table in tables:
            con.execute(f'CREATE OR REPLACE VIEW "{view}" AS {sql}')
    return tables


def refresh_views(root: Path | None = None) -> Path:
    """Rebuild `warehouse.duckdb` (views only) and swap it in atomically. On a local disk its views
    read paths relative to the warehouse folder: open it with `connect`, from that folder, or after
    `SET file_search_path` to it."""
    root = root or warehouse_dir()
    path = root / "warehouse.duckdb"
    with atomic_path(path) as tmp:
        os.remove(tmp)  # DuckDB wants to create the file itself
        con = duckdb.connect(str(tmp))
        try:
            create_views(con, root, relative=not is_remote(root))
        finally:
            con.close()
    return path


def connect(path: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB session on a warehouse's views file (`warehouse.duckdb` of the default
    warehouse when None), wherever its folder now lies: the relative views resolve against it."""
    path = Path(path) if path is not None else warehouse_dir() / "warehouse.duckdb"
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET file_search_path = $p", {"p": str(path.resolve().parent)})
    return con


READ_STATEMENTS = {"SELECT", "EXPLAIN"}  # DuckDB statement types a query may be (SHOW, DESCRIBE, PRAGMA x: SELECT)


class ReadOnlyError(ValueError):
    """A statement `query` refuses: the message names it."""


def query(sql: str, params: dict | None = None, root: Path | None = None) -> pd.DataFrame:
    """Run read-only SQL over the warehouse's tables (an in-memory DuckDB with the views).

    Only queries run: DuckDB's own parser types each statement and anything but a query (writes,
    COPY, ATTACH, INSTALL/LOAD, SET) is refused; once the views exist, file access is limited to the
    warehouse's tables, external access is off and the configuration is locked, so a query cannot
    read other files or turn that back on. `params` are bound, never spliced into the text.
    """
    root = root or warehouse_dir()
    return reread_if_replaced(lambda: _query(sql, params, root))


def _query(sql: str, params: dict | None, root: Path) -> pd.DataFrame:
    con = duckdb.connect(":memory:")
    try:
        for statement in con.extract_statements(sql):
            kind = statement.type.name
            if kind not in READ_STATEMENTS:
                raise ReadOnlyError(f"refused: a {kind} statement; the warehouse is read-only here "
                                    f"(queries only: SELECT, WITH, SHOW, DESCRIBE, EXPLAIN)")
        create_views(con, root)
        con.execute("SET allowed_directories = $d", {"d": [str(root / "tables") + ("/" if is_remote(root) else os.sep)]})
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con.execute(sql, params or {}).df()
    finally:
        con.close()


def artifact_path(asset: str, dataset: str, suffix: str, root: Path | None = None) -> Path:
    return (root or warehouse_dir()) / "artifacts" / asset / f"{dataset}{suffix}"


def find_artifact(asset: str, dataset: str, root: Path | None = None) -> Path:
    hits = sorted(((root or warehouse_dir()) / "artifacts" / asset).glob(f"{dataset}.*"))
    if not hits:
        raise FileNotFoundError(f"no artifact for asset {asset!r}, dataset {dataset!r}: materialize it first")
    return hits[0]


def write_artifact(asset: str, dataset: str, obj, root: Path | None = None) -> Path:
    """Write a non-tabular result atomically, by what it is:

    - a MuData → .h5mu; an object with ``to_mudata()`` → .h5mu whose ``uns["artifact"]`` names its type;
    - a sparse matrix → .npz;
    - an object with ``to_state()`` (plain data: tensors, arrays, lists, dicts) → .pt holding the state
      and its type, loaded with ``torch.load(weights_only=True)`` and rebuilt by ``from_state``.

    Storage knows these kinds, not the domain: a type is named ``module:qualname`` and read back
    from that module (within this package).
    """
    # torch and mudata are imported where used: `multiome-assets sql` needs neither and starts faster
    if hasattr(obj, "to_mudata"):
        path = artifact_path(asset, dataset, ".h5mu", root)
        mdata = obj.to_mudata()
        mdata.uns["artifact"] = type_name(obj)
        with atomic_path(path) as tmp:
            mdata.write_h5mu(tmp)
    elif type(obj).__name__ == "MuData":  # e.g. translated profiles, one modality per scenario
        path = artifact_path(asset, dataset, ".h5mu", root)
        with atomic_path(path) as tmp:
            obj.write_h5mu(tmp)
    elif sp.issparse(obj):
        path = artifact_path(asset, dataset, ".npz", root)
        with atomic_path(path) as tmp:
            sp.save_npz(tmp, sp.csr_matrix(obj))
    elif hasattr(obj, "to_state") and hasattr(type(obj), "from_state"):
        path = artifact_path(asset, dataset, ".pt", root)
        import torch

        with atomic_path(path) as tmp:
            torch.save({"artifact": type_name(obj), "state": obj.to_state()}, tmp)
    else:
        raise TypeError(f"asset {asset!r} returned {type(obj).__name__}; expected a DataFrame, a MuData, a sparse "
                        f"matrix, or an object with to_mudata() or to_state()/from_state()")
    for stale in path.parent.glob(f"{dataset}.*"):
        if stale != path:
            stale.unlink()
    return path


def type_name(obj) -> str:
    return f"{type(obj).__module__}:{type(obj).__qualname__}"


def named_type(name, path: Path, rebuild: str) -> type | None:
    """The class an artifact file names (``module:qualname``) if it has `rebuild`; None otherwise."""
    module, _, qualname = str(name).partition(":")
    if not module.startswith(ARTIFACT_PACKAGE) or not qualname:
        return None
    try:
        cls = getattr(importlib.import_module(module), qualname)
    except (ImportError, AttributeError):
        return None
    return cls if hasattr(cls, rebuild) else None


def read_artifact(path: Path):
    with local_file(path) as local:
        return _read_local_artifact(local, path)


def _read_local_artifact(path: Path, named: Path):
    if path.suffix == ".h5mu":
        import mudata

        with mudata.set_options(pull_on_update=False):
            mdata = mudata.read_h5mu(path)
        cls = named_type(mdata.uns.get("artifact"), named, "from_mudata")
        return cls.from_mudata(mdata) if cls else mdata
    if path.suffix == ".npz":
        return sp.load_npz(path).tocsr()
    if path.suffix == ".pt":
        return _read_typed_artifact(path, named)
    raise ValueError(f"{named}: unknown artifact type {path.suffix!r}")


def _read_typed_artifact(path: Path, named: Path):
    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        saved = None  # pickled objects: written by an older version of this code
    cls = named_type(saved.get("artifact"), named, "from_state") if isinstance(saved, dict) else None
    if cls is None:
        raise ValueError(f"{named}: not an artifact this version reads (written by an older version?); "
                         f"rematerialize asset {named.parent.name!r}")
    return cls.from_state(saved["state"])
