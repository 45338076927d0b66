from pathlib import Path

import dagster as dg
import pandas as pd

from multiome_assets import files, warehouse


class WarehouseIOManager(dg.ConfigurableIOManager):
    """DataFrames → Parquet tables with DuckDB views; everything else → atomic artifact files."""

    root: str = ""  # a folder or an fsspec URL (s3://bucket/prefix); empty: $MULTIOME_WAREHOUSE or data/warehouse

    def _root(self) -> Path:
        return files.as_path(self.root) if self.root else warehouse.warehouse_dir()

    def directory(self) -> Path:
        """The warehouse folder (for assets that read another partition's results)."""
        return self._root()

    def table_path(self, table: str, key: str) -> Path:
        """Where a table's partition is, in this warehouse (for an asset that extends its own history)."""
        return warehouse.table_path(table, key, self._root())

    def artifact_path(self, asset: str, key: str, suffix: str) -> Path:
        """Where a side file of an asset (a figure) goes, in this warehouse."""
        return warehouse.artifact_path(asset, key, suffix, self._root())

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        name, key = context.asset_key.path[-1], context.partition_key
        if isinstance(obj, pd.DataFrame):
            path = warehouse.write_table(name, key, obj, self._root())
            meta = {"dagster/row_count": len(obj), "table": name}
        else:
            path = warehouse.write_artifact(name, key, obj, self._root())
            meta = {}
        context.add_output_metadata(
            {**meta, "path": dg.MetadataValue.path(str(path)), "sha256": files.sha256(path),
             "bytes": path.stat().st_size}
        )

    def load_input(self, context: dg.InputContext):
        name, key = context.upstream_output.asset_key.path[-1], context.partition_key
        table = warehouse.table_path(name, key, self._root())
        if table.exists():  # an input's `where` metadata: only the rows it names
            return warehouse.read_parquet(table, context.definition_metadata.get("where")).drop(columns=["dataset"])
        artifact = warehouse.read_artifact(warehouse.find_artifact(name, key, self._root()))
        wanted = context.dagster_type.typing_type
        if type(artifact).__name__ == "MuData" and hasattr(wanted, "from_mudata"):  # a file from before files named their type
            artifact = wanted.from_mudata(artifact)
        return artifact
