"""`multiome-assets`: register datasets, build everything for the bundled data, and query results with SQL."""
from __future__ import annotations

import os
import sys

import click

from multiome_assets.dataset import PROJECT_ROOT, DatasetError, list_dataset_keys, load_spec


def _instance():
    import dagster as dg

    home = os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home"))
    os.makedirs(home, exist_ok=True)
    config = os.path.join(home, "dagster.yaml")
    if not os.path.exists(config):
        with open(config, "w") as f:
            f.write("telemetry:\n  enabled: false\n")
    return dg.DagsterInstance.get()


@click.group()
def main():
    """Dagster assets for paired single-cell RNA + ATAC (multiome) data."""


@main.command()
@click.argument("sql", default="-")
@click.option("-p", "--param", "params", type=(str, str), multiple=True, help="Named parameter: -p name value, used as $name")
@click.option("--csv", "fmt", flag_value="csv", help="Print CSV")
@click.option("--json", "fmt", flag_value="json", help="Print JSON records")
@click.option("--table", "fmt", flag_value="table", default=True, help="Print an aligned table (default)")
def sql(sql, params, fmt):
    """Run read-only SQL over every materialized table (one view per asset).

    Example:

        multiome-assets sql "select dataset, count(*) from candidate_sets group by 1"
    """
    import duckdb

    from multiome_assets.warehouse import query

    text = sys.stdin.read() if sql == "-" else sql
    try:
        df = query(text, dict(params))
    except duckdb.Error as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records"))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", 200, "display.max_columns", 50, "display.width", 200):
            click.echo(df.to_string(index=False))


@main.command()
@click.argument("key")
def register(key):
    """Register data/datasets/KEY/ (checked first) as a dataset partition."""
    try:
        spec = load_spec(key)
    except DatasetError as e:
        raise click.ClickException(str(e)) from None
    instance = _instance()
    if key not in instance.get_dynamic_partitions("dataset"):
        instance.add_dynamic_partitions("dataset", [key])
    click.echo(f"registered {key}: {spec.title} ({spec.folder})")


@main.command()
@click.option("--dataset", "keys", multiple=True, help="Only these datasets (default: every folder in data/datasets)")
@click.option("--select", default="*", help="Dagster asset selection, e.g. 'group:foundation'")
def build(keys, select):
    """Register and materialize assets for each dataset, in-process, then print a summary."""
    import dagster as dg

    from multiome_assets.definitions import ASSETS, RESOURCES, defs
    from multiome_assets.warehouse import list_tables, query, warehouse_dir

    try:
        selected = dg.AssetSelection.from_string(select).resolve(defs.resolve_asset_graph())
    except dg.DagsterError as e:
        raise click.ClickException(f"--select {select!r}: {e}") from None
    if not selected:
        raise click.ClickException(f"--select {select!r} matches no asset (e.g. 'group:foundation', 'grn_embeddings*')")
    instance = _instance()
    keys = list(keys) or list_dataset_keys()
    for key in keys:
        try:
            load_spec(key)
        except DatasetError as e:
            raise click.ClickException(str(e)) from None
        if key not in instance.get_dynamic_partitions("dataset"):
            instance.add_dynamic_partitions("dataset", [key])
        click.echo(f"== materializing {key}")
        try:
            result = dg.materialize(ASSETS, partition_key=key, instance=instance, selection=select,
                                    resources=RESOURCES, raise_on_error=False)
        except dg.DagsterInvalidDefinitionError as e:  # e.g. one output of a multi-asset
            raise click.ClickException(f"--select {select!r}: {e.__cause__ or e}") from None
        if not result.success:
            raise click.ClickException(f"materialization of {key} failed; see the log above")
    click.echo("\n== built")
    if list_tables():  # not when only artifacts (multiome, backbones) were selected
        counts = query(" union all ".join(
            f"select '{t}' as \"table\", dataset, count(*) as rows from \"{t}\" group by dataset" for t in list_tables()
        ) + " order by 1, 2")
        click.echo(counts.to_string(index=False))
    click.echo(f"\nwarehouse: {warehouse_dir()}  (artifacts/ and tables/; views in warehouse.duckdb)")
    click.echo("dagster instance: " + os.environ["DAGSTER_HOME"] + "  (make ui to browse)")
    click.echo('try: multiome-assets sql "select dataset, count(*) from candidate_sets group by 1"')


@main.command()
def datasets():
    """List dataset folders and whether they are registered as partitions."""
    registered = set(_instance().get_dynamic_partitions("dataset"))
    for key in list_dataset_keys():
        status = "registered" if key in registered else "new"
        try:
            spec = load_spec(key)
        except DatasetError as e:  # one broken folder does not hide the others
            click.echo(f"{key}\t{status}\tinvalid: {e}")
            continue
        click.echo(f"{key}\t{status}\t{spec.format}\t{spec.title}")


if __name__ == "__main__":
    main()
