"""The docs' results, written from the warehouse's SQL tables so that the docs say what the tables
hold. A table in a docs page sits between `<!-- table: NAME ARGS -->` and `<!-- end table -->`;
NAME is one of TABLES, ARGS its arguments (a dataset, a direction). A number in the prose sits
between `<!-- value: NAME -->` and `<!-- end value -->`; a `<!-- values ... -->` block of that page
(or of another page checked with it) holds NAME's query, `NAME: SELECT ...` continued on indented
lines, giving one row and one column. An integer is printed with thousands separators, a float with
3 decimals (a column named `p`: as a p-value, 2 decimals or short scientific), text as it comes
(printf for other formats).

    python -m multiome_assets.doc_tables --check     # after `make demo`: which docs tables and values differ (exit 1 if any)
    python -m multiome_assets.doc_tables --write     # rewrite them from the warehouse
    python -m multiome_assets.doc_tables --warehouse DIR --check docs/links.md
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from multiome_assets import warehouse
from multiome_assets.dataset import PROJECT_ROOT

MARKER = re.compile(r"<!-- table: (?P<spec>[^>]*?) -->\n(?P<body>.*?)<!-- end table -->", re.S)
VALUE = re.compile(r"<!-- value: (?P<name>[\w.-]+) -->(?P<body>.*?)<!-- end value -->", re.S)
QUERIES = re.compile(r"^<!-- values\n(?P<block>.*?)^-->", re.S | re.M)
DOCS = ("docs/translation.md", "docs/links.md", "README.md")
TRANSLATION_METRICS = {"atac2rna": ["gene_pearson", "gene_spearman", "cell_pearson", "ari", "prediction_spread"],
                       "rna2atac": ["per_cre_auroc_macro", "auroc", "auprc", "f1", "pseudobulk_pearson", "ari",
                                    "prediction_spread"]}
SCENARIOS = ["random", "held_out_donor", "held_out_cell_type"]
METHODS = ["cisformer", "knn", "ridge", "global_mean", "cell_type_mean_oracle"]


def number(x, digits: int = 3, scientific: bool = False) -> str:
    """A value as the docs print it: integers with thousands separators, floats with fixed decimals;
    with `scientific` (p-values, tiny spreads), values below 10^-digits in short scientific form."""
    if pd.isna(x):
        return ""
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if scientific and x != 0 and abs(x) < 10 ** -digits:
        mantissa, exponent = f"{x:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return f"{x:.{digits}f}"


def _numbers(frame: pd.DataFrame, scientific: tuple[str, ...] = ()) -> pd.DataFrame:
    return frame.apply(lambda c: c.map(lambda x: number(x, scientific=c.name in scientific))
                       if c.dtype.kind in "fi" else c)


def markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in frame.astype(str).itertuples(index=False)]
    return "\n".join(lines) + "\n"


def translation_metrics(root: Path, dataset: str, direction: str) -> str:
    """Scenario × method rows, the direction's metrics as columns (`translation_metrics`)."""
    rows = warehouse.query("select scenario, method, metric, value from translation_metrics "
                           "where dataset = $d and direction = $r", {"d": dataset, "r": direction}, root=root)
    table = rows.pivot_table(index=["scenario", "method"], columns="metric", values="value", aggfunc="first")
    table = table.reindex(columns=[m for m in TRANSLATION_METRICS[direction] if m in table.columns])
    order = pd.MultiIndex.from_product([SCENARIOS, METHODS])
    table = table.reindex([i for i in order if i in table.index])
    return markdown(_numbers(table.reset_index(), scientific=("prediction_spread",)))


def link_validation(root: Path) -> str:
    """Top-N links against distance-matched pairs, per dataset, cells and method (`link_validation`)."""
    rows = warehouse.query("""select dataset, method, cells, n, observed, baseline, pvalue, fdr from link_validation
        where kind = 'top_vs_distance_matched' order by dataset, cells desc, method, n""", root=root)
    out = pd.DataFrame({"dataset": rows.dataset, "method": rows.method, "cells": rows.cells,
                        "top N": rows.n.map(number), "r, top links": rows.observed.map(number),
                        "r, matched": rows.baseline.map(number),
                        "p": rows.pvalue.map(lambda p: number(p, 2, scientific=True)),
                        "FDR": rows.fdr.map(lambda p: number(p, 3, scientific=True))})
    return markdown(out)


def tf_cre_gene_metrics(root: Path) -> str:
    """The triplets' evaluation: per dataset, split and evidence, each method's AUROCs (`tf_cre_gene_metrics`)."""
    rows = warehouse.query("""select dataset, split, tf_cre_evidence, method, n_supported, auroc,
        per_target_auroc_macro, degree_matched_auroc, auprc_ratio from tf_cre_gene_metrics
        order by dataset, split, tf_cre_evidence, method""", root=root)
    supported = rows.pop("n_supported").map(lambda n: "" if pd.isna(n) else number(int(n)))
    return markdown(_numbers(rows).assign(n_supported=supported)[[*rows.columns[:4], "n_supported", *rows.columns[4:]]])


TABLES = {"translation_metrics": translation_metrics, "link_validation": link_validation,
          "tf_cre_gene_metrics": tf_cre_gene_metrics}


def rewritten(text: str, root: Path, known: dict[str, str] | None = None) -> str:
    """`text` with each marked table and value written from the warehouse at `root`; `known`:
    value queries of other pages, which the page's own block extends."""
    def table(match: re.Match) -> str:
        name, *args = match["spec"].split()
        if name not in TABLES:
            raise ValueError(f"unknown docs table {name!r}; known: {', '.join(TABLES)}")
        return f"<!-- table: {match['spec']} -->\n{TABLES[name](root, *args)}<!-- end table -->"
    return _values(MARKER.sub(table, text), root, {**(known or {}), **queries(text)})


def queries(text: str) -> dict[str, str]:
    """NAME -> query of a page's `<!-- values -->` blocks."""
    out: dict[str, str] = {}
    for block in QUERIES.finditer(text):
        for entry in re.split(r"\n(?=\S)", block["block"].strip()):
            name, sep, sql = entry.partition(":")
            if not sep or not re.fullmatch(r"[\w.-]+", name.strip()):
                raise ValueError(f"a docs value query must read `NAME: SELECT ...`; got {entry[:60]!r}")
            out[name.strip()] = " ".join(sql.split())
    return out


def value(sql: str, root: Path) -> str:
    """The one value of `sql` over the warehouse at `root`, as the docs print it."""
    rows = warehouse.query(sql, root=root)
    if rows.shape != (1, 1) or pd.isna(rows.iat[0, 0]):
        raise ValueError(f"a docs value needs one row and one non-null column; {rows.shape[0]} row(s) of "
                         f"{rows.shape[1]} column(s) from: {sql}")
    x = rows.iat[0, 0]
    if isinstance(x, str):
        return x
    x = x.item() if isinstance(x, np.generic) else x
    return number(x, 2, scientific=True) if rows.columns[0] == "p" else number(x)


def _values(text: str, root: Path, sql: dict[str, str]) -> str:
    def fill(match: re.Match) -> str:
        if match["name"] not in sql:
            raise ValueError(f"docs value {match['name']!r} has no query in a <!-- values --> block")
        try:
            return f"<!-- value: {match['name']} -->{value(sql[match['name']], root)}<!-- end value -->"
        except Exception as error:
            raise ValueError(f"docs value {match['name']!r}: {error}") from error
    return VALUE.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", default=list(DOCS))
    parser.add_argument("--warehouse", type=Path, default=None, help="default: the project's warehouse")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--check", action="store_true")
    action.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    root = args.warehouse or warehouse.warehouse_dir()
    differ = 0
    paths = [Path(page) if Path(page).is_absolute() else PROJECT_ROOT / page for page in args.pages]
    known = {name: sql for path in paths for name, sql in queries(path.read_text()).items()}
    for page, path in zip(args.pages, paths):
        text = path.read_text()
        try:
            new = rewritten(text, root, known)
        except ValueError as error:
            print(f"{page}: {error}", file=sys.stderr)
            differ += 1
            continue
        if new != text:
            differ += 1
            if args.write:
                path.write_text(new)
            else:
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), str(page),
                                                           f"{page} (from {root})"))
    print(f"{differ} page(s) {'rewritten' if args.write else 'differ from the warehouse'}", file=sys.stderr)
    return 1 if differ and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
