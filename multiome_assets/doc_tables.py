"""The docs' results tables, written from the warehouse's SQL tables so that the docs say what the
tables hold. A table in a docs page sits between `<!-- table: NAME ARGS -->` and `<!-- end table -->`;
NAME is one of TABLES, ARGS its arguments (a dataset, a direction).

    python -m multiome_assets.doc_tables --check     # after `make demo`: which docs tables differ (exit 1 if any)
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
DOCS = ("docs/translation.md", "docs/links.md")
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


def rewritten(text: str, root: Path) -> str:
    """`text` with each marked table written from the warehouse at `root`."""
    def table(match: re.Match) -> str:
        name, *args = match["spec"].split()
        if name not in TABLES:
            raise ValueError(f"unknown docs table {name!r}; known: {', '.join(TABLES)}")
        return f"<!-- table: {match['spec']} -->\n{TABLES[name](root, *args)}<!-- end table -->"
    return MARKER.sub(table, text)


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
    for page in args.pages:
        path = Path(page) if Path(page).is_absolute() else PROJECT_ROOT / page
        text = path.read_text()
        new = rewritten(text, root)
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
