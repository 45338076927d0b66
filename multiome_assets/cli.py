"""`multiome-assets`: register datasets, build everything for the bundled data, and query results with SQL."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from multiome_assets.dataset import (
    PROJECT_ROOT,
    DatasetError,
    dataset_folders,
    list_dataset_keys,
    load_spec,
    reference_path,
)

INSTANCE_SETTINGS = {"telemetry": "telemetry:\n  enabled: false\n",  # never phones home
                     "nux": "nux:\n  enabled: false\n"}  # no first-run "join the community" dialog over the UI


def instance_home() -> Path:
    """$DAGSTER_HOME (default .dagster_home/), its dagster.yaml holding INSTANCE_SETTINGS (added to a
    file that lacks them)."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = config.read_text() if config.exists() else ""
    missing = [block for key, block in INSTANCE_SETTINGS.items() if not any(
        line.startswith(f"{key}:") for line in text.splitlines())]
    if missing:  # written whole, then renamed: a process starting beside this one reads it whole
        partial = home / f".dagster.yaml.{os.getpid()}"
        partial.write_text(text + ("\n" if text and not text.endswith("\n") else "") + "".join(missing))
        partial.replace(config)
    return home


def _instance():
    """The Dagster instance at instance_home(). Its SQLite storages are created on first use, and two
    processes creating them at once (two builds on a fresh home) collide in Dagster's schema stamping:
    an exclusive lock on the home makes one create them while the other waits, then opens them."""
    import fcntl

    import dagster as dg

    home = instance_home()
    with open(home / ".instance.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    """Run read-only SQL over every materialized table (one view per asset): queries only; writes,
    COPY, ATTACH, INSTALL/LOAD, SET and reads of files outside the warehouse are refused.

    Example:

        multiome-assets sql "select dataset, count(*) from candidate_sets group by 1"
    """
    import duckdb

    from multiome_assets.warehouse import ReadOnlyError, query

    text = sys.stdin.read() if sql == "-" else sql
    try:
        df = query(text, dict(params))
    except (duckdb.Error, ReadOnlyError) as e:
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
    changed = _register(_instance(), key, spec)
    click.echo(f"registered {key}: {spec.title} ({spec.folder})")
    if changed:
        click.echo(f"inputs new or changed: {', '.join(changed)}")


def _register(instance, key: str, spec) -> list[str]:
    """Add the partition, record the versions of its input files and settings; the names of the
    inputs that changed since last recorded."""
    from multiome_assets.defs.inputs import changed_inputs
    from multiome_assets.warehouse import warehouse_dir

    if key not in instance.get_dynamic_partitions("dataset"):
        instance.add_dynamic_partitions("dataset", [key])
    changed = changed_inputs(instance, key, spec, warehouse_dir())
    for observation in changed:
        instance.report_runless_asset_event(observation)
    return [o.asset_key.path[-1] for o in changed]


def _selection(select: str) -> list:
    """The asset keys `--select` names, grown to whole steps; says which keys that added."""
    import dagster as dg

    from multiome_assets.build import select_assets
    from multiome_assets.definitions import defs

    try:
        keys, added = select_assets(defs, select)
    except dg.DagsterError as e:
        raise click.ClickException(f"--select {select!r}: {e}") from None
    if not keys:
        raise click.ClickException(f"--select {select!r} matches no asset (e.g. 'group:foundation', 'grn_embeddings*')")
    if added:
        click.echo(f"--select {select!r}: also {', '.join(k.to_user_string() for k in added)} (made in the same step)")
    return keys


@main.command()
@click.option("--dataset", "keys", multiple=True, help="Only these datasets (default: every folder in data/datasets)")
@click.option("--select", default="*", help="Dagster asset selection, e.g. 'group:foundation', 'grn_embeddings*', 'key:grn_baselines or key:edge_scores'")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML run config, as in the UI's launchpad (ops: {grn_evaluation: {config: ...}})")
@click.option("--stale", is_flag=True, help="Only what is missing or stale, and what depends on it (as make does)")
@click.option("--verbose", is_flag=True, help="Dagster's full run log instead of the progress line")
def build(keys, select, config_file, stale, verbose):
    """Register and materialize assets for each dataset, in-process, then print a summary."""
    import dagster as dg
    import yaml

    from multiome_assets.build import (
        applicable,
        build_order,
        materialize_partition,
        out_of_date,
        root_errors,
        run_config_for,
        steps,
        unknown_steps,
    )
    from multiome_assets.definitions import defs
    from multiome_assets.warehouse import list_tables, query, warehouse_dir

    selected = _selection(select)
    run_config = {}
    if config_file:
        try:
            run_config = yaml.safe_load(Path(config_file).read_text()) or {}
        except yaml.YAMLError as e:
            raise click.ClickException(f"{config_file}: not YAML ({e})") from None
    unknown = unknown_steps(defs, run_config)  # config of a step that --stale skips is dropped per dataset
    if unknown:
        raise click.ClickException(f"{config_file}: no step named {', '.join(unknown)} "
                                   f"(steps: {', '.join(sorted(steps(defs)))})")
    instance = _instance()
    specs = {}
    for key in list(keys) or list_dataset_keys():
        try:
            specs[key] = load_spec(key)
        except DatasetError as e:
            raise click.ClickException(str(e)) from None
    for key in build_order(specs):
        spec = specs[key]
        changed = _register(instance, key, spec)  # after its translator_from dataset built: its translators are input
        if changed:
            click.echo(f"== {key}: inputs new or changed: {', '.join(changed)}")
        wanted = applicable(defs, selected, spec)
        todo = out_of_date(defs, wanted, key, instance) if stale else wanted
        if not todo:
            click.echo(f"== {key}: up to date")
            continue
        click.echo(f"== materializing {key}: {', '.join(k.to_user_string() for k in todo)}")
        config = run_config_for(defs, run_config, todo)
        if not verbose:  # the progress line instead of Dagster's log; failed steps' root errors print below
            config = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, **config}
        line = None if verbose else ProgressLine(key)
        try:
            result = materialize_partition(defs, todo, key, instance, config, progress=line)
        except dg.DagsterInvalidConfigError as e:
            raise click.ClickException(f"{config_file}: {e}") from None
        finally:
            if line is not None:
                line.close()
        if not result.success:
            failures = "\n".join(f"  {step}: {message}" for step, message in root_errors(result))
            raise click.ClickException(f"materialization of {key} failed:\n{failures}")
    click.echo("\n== built")
    if list_tables():  # not when only artifacts (multiome, backbones) were selected
        counts = query(" union all ".join(
            f"select '{t}' as \"table\", dataset, count(*) as rows from \"{t}\" group by dataset" for t in list_tables()
        ) + " order by 1, 2")
        click.echo(counts.to_string(index=False))
    click.echo(f"\nwarehouse: {warehouse_dir()}  (artifacts/ and tables/; views in warehouse.duckdb)")
    click.echo("dagster instance: " + os.environ["DAGSTER_HOME"] + "  (make ui to browse)")
    click.echo('try: multiome-assets sql "select dataset, count(*) from candidate_sets group by 1"')


class ProgressLine:
    """`key [done/total steps] running STEP · elapsed · what the step said last` (a training step:
    epoch, step, time left): redrawn in place on a terminal, cut to its width; elsewhere (a log
    file, CI) a line each time that changes."""

    def __init__(self, key: str):
        self.key, self.shown, self.tty = key, None, sys.stdout.isatty()

    def __call__(self, p) -> None:
        minutes, seconds = divmod(int(p.elapsed_s), 60)
        failed = f", {p.failed} failed" if p.failed else ""
        step = "finished" if p.finished else f"running {p.running}" if p.running else "starting"
        line = f"{self.key} [{p.done}/{p.total} steps{failed}] {step}"
        detail = f" · {p.detail}" if p.detail and not p.finished else ""
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            click.echo(f"\r\033[K{(line + f' · {minutes}m{seconds:02d}s' + detail)[:width]}", nl=False)
        elif line + detail != self.shown:
            click.echo(f"{line} · {minutes}m{seconds:02d}s{detail}")
        self.shown = line + detail

    def close(self) -> None:
        if self.tty and self.shown is not None:
            click.echo()


@main.group()
def priors():
    """Install new releases of the bundled priors."""


@priors.command("update")
@click.argument("name", type=click.Choice(["dorothea", "collectri"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def priors_update(name, file):
    """Replace the bundled prior NAME with FILE: checked against every dataset that names it (a bad
    file is refused and the old one stays), installed atomically, the change recorded; prints what
    it makes stale (the automation sensor reruns it under `make ui`; else `build --stale`)."""
    import shutil

    from multiome_assets.definitions import defs
    from multiome_assets.defs.automation import following
    from multiome_assets.defs.inputs import INPUTS
    from multiome_assets.files import atomic_path
    from multiome_assets.priors import check_update, read_tf_list
    from multiome_assets.readers import read_dataset

    target = reference_path(name)
    specs = {}
    for key in list_dataset_keys():
        try:
            spec = load_spec(key)
        except DatasetError:
            continue  # a broken folder is not this command's concern
        if spec.prior == target:
            specs[key] = spec
    try:
        kept = check_update(file, {key: (read_dataset(spec).rna.var_names, read_tf_list(spec.tf_list))
                                   for key, spec in specs.items()})
    except DatasetError as e:
        raise click.ClickException(f"refused, {target.name} unchanged: {e}") from None
    with atomic_path(target) as tmp:
        shutil.copyfile(file, tmp)
    click.echo(f"installed {file} as {target}")
    stale = sorted(k.to_user_string() for k in following(defs.resolve_asset_graph(), [INPUTS["prior"]]))
    instance = _instance()
    for key, spec in specs.items():
        changed = _register(instance, key, spec)
        if "prior" in changed:
            click.echo(f"{key}: {kept[key]} edges in the dataset; stale: {', '.join(stale)} "
                       f"(and grn_genes: `build --select 'grn_genes*'` retrains the GRN on the prior's genes)")
    if not specs:
        click.echo("no dataset names it")


@main.group()
def export():
    """Write results in the shapes other tools read."""


@export.command("links")
@click.option("--dataset", required=True, help="the dataset whose links to write")
@click.option("--format", "fmt", type=click.Choice(["bedpe", "interact"]), default="bedpe", show_default=True,
              help="bedpe: IGV, 10x Loupe, HiGlass; interact: the UCSC browser")
@click.option("--method", type=click.Choice(["attention", "correlation"]), default=None, help="default: both")
@click.option("--cell-type", "cell_types", multiple=True, help="default: every cell type and `all`")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True)
def export_links(dataset, fmt, method, cell_types, out):
    """CRE-gene links as genome-browser tracks, one file per method and cell type (from `link_tracks`)."""
    from multiome_assets.links.tracks import write_tracks
    from multiome_assets.warehouse import read_table

    try:
        table = read_table("link_tracks", dataset).drop(columns=["dataset"])
    except FileNotFoundError:
        raise click.ClickException(f"no link_tracks for {dataset!r}: multiome-assets build --dataset {dataset} "
                                   "--select link_tracks") from None
    if method:
        table = table[table.method == method]
    if cell_types:
        unknown = sorted(set(cell_types) - set(table.cell_type))
        if unknown:
            raise click.ClickException(f"{dataset} has no links for cell type(s) {unknown}; "
                                       f"it has {sorted(table.cell_type.unique())}")
        table = table[table.cell_type.isin(cell_types)]
    for path in write_tracks(table, out, dataset, fmt):
        click.echo(path)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("-h", "--host", default="127.0.0.1", show_default=True, help="0.0.0.0 to serve other machines")
@click.option("-p", "--port", default=3000, show_default=True)
def ui(host, port):
    """The Dagster UI (dagster dev) on this project's instance: telemetry off, no first-run dialog."""
    instance_home()
    os.execvp("dagster", ["dagster", "dev", "-h", host, "-p", str(port), "-w", str(PROJECT_ROOT / "workspace.yaml")])


@main.command()
def datasets():
    """List dataset folders and whether they are registered as partitions."""
    registered = set(_instance().get_dynamic_partitions("dataset"))
    for key in dataset_folders():  # a folder with an invalid name is listed with the reason
        status = "registered" if key in registered else "new"
        try:
            spec = load_spec(key)
        except DatasetError as e:  # one broken folder does not hide the others
            click.echo(f"{key}\t{status}\tinvalid: {e}")
            continue
        via = f"\ttranslated by {spec.translator_from}" if spec.translator_from else ""
        click.echo(f"{key}\t{status}\t{spec.format} ({'+'.join(spec.modalities)})\t{spec.title}{via}")


if __name__ == "__main__":
    main()
