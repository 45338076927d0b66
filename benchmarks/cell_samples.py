"""What the cell-sample budgets of the translation profiles cost, measured on a `make demo` warehouse.

Two budgets choose which cells are read, not how a model is trained, so each is measured with the
warehouse's trained translators (no retraining), over several seeds of the sample:

- `links` (`max_link_cells`): the `random` translator's attention read for at most N cells per cell
  set (`all` and each cell type). The attention links are recomputed at each N, the warehouse's
  correlation links kept, and `link_validation` run on the held-out cells: the top links' held-out
  pseudobulk r against distance-matched pairs, and the Spearman correlation of a gene's number of
  links with its held-out expression.
- `test` (`max_test_cells`): the held-out cells translated and scored per scenario. The warehouse's
  translated profiles are cut to a seeded sample of N cells per scenario and scored as
  `translation_metrics` scores them (the transformer and the simple translators on the same cells).

- `types` (`max_link_cells_per_type`): the cell-type sets alone cut to N cells (`all` keeps its
  budget, so `link_validation`, which reads `all`, is unchanged). What the cell-type links feed
  (`cre_link_scores`, the cell-type-specific cCREs, the regulons) is compared with the links of
  every cell of each type (`max_link_cells` per type): per cell type, the Spearman r of the cCREs'
  summed link scores and the Jaccard index of the specific cCREs. Beside it, the same comparison for
  a translator retrained with another seed (`--translator-seeds`), every cell of each type: the
  seed noise of these outputs.

A budget at or above a set's cells takes them all (one seed then says all there is).

    make demo    # the warehouse (or any warehouse holding the dataset's translators and links)
    python benchmarks/cell_samples.py links --dataset bmmc_starter --cells 100 50 --seeds 0 1 2
    python benchmarks/cell_samples.py test --dataset bmmc_starter --cells 1000 50 --seeds 0 1 2
    python benchmarks/cell_samples.py types --dataset bmmc_starter --cells 50 25 --seeds 0 1 2 --translator-seeds 1 2

Prints one row per (cells, seed) and the mean ± sd per budget; --out writes the rows as CSV.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
LINK_CHECKS = {"top_vs_distance_matched": "r", "expression_by_links": "spearman"}
TEST_METRICS = {"rna2atac": ("per_cre_auroc_macro", "auroc", "f1"), "atac2rna": ("gene_pearson", "cell_pearson")}


def load(dataset: str, tables: tuple[str, ...], artifacts: tuple[str, ...]) -> dict:
    sys.path.insert(0, str(ROOT))
    from multiome_assets import warehouse

    out = {name: warehouse.read_table(name, dataset).drop(columns=["dataset"]) for name in tables}
    out.update({name: warehouse.read_artifact(warehouse.find_artifact(name, dataset)) for name in artifacts})
    return out


def _attention_links(x: dict, spec, model, seed: int, types_only: bool = False, **budget) -> tuple[pd.DataFrame, int]:
    """The attention links of `model` as `cre_gene_links` makes them, with the profile's link budgets
    changed by `budget` (`max_link_cells`, `max_link_cells_per_type`); and the number of cells read."""
    from dataclasses import replace

    from multiome_assets.cells import cell_labels
    from multiome_assets.links import extract, pipeline
    from multiome_assets.translation.train import training_config

    cells, pairs, _ = pipeline._cells_and_pairs(x["multiome"], x["gene_vocab_map"], x["gene_annotation"],
                                                 x["peak_vocab_matrix"], spec)
    config = replace(training_config("atac2rna", x["translator_atac2rna"].profile, 0), **budget)
    sets = pipeline.link_cell_sets(cell_labels(x["multiome"].rna.obs, spec.cell_type_column), cells.n_cells, config,
                                   seed=seed)
    if types_only:
        sets.pop("all")
    scored = extract.attention_links(model, cells, pairs, sets, gene_chunk=config.n_queries, max_cres=config.max_source,
                                     seed=seed)
    return extract.links_table(pairs, scored, "attention"), int(sum(map(len, sets.values())))


def _model(x: dict):
    from multiome_assets.links import pipeline

    return x["model"] if "model" in x else x["translator_atac2rna"].model(pipeline.SCENARIO)


def link_checks(dataset: str, n: int, seed: int, x: dict) -> dict:
    from multiome_assets.dataset import load_spec
    from multiome_assets.links import pipeline

    spec, t = load_spec(dataset), time.perf_counter()
    attention, n_cells = _attention_links(x, spec, _model(x), seed, max_link_cells=n, max_link_cells_per_type=n)
    seconds = time.perf_counter() - t
    links = x["cre_gene_links"]
    table = pd.concat([attention, links[links.method == "correlation"]], ignore_index=True)
    checks = pipeline.link_validation(table, x["multiome"], x["gene_vocab_map"], x["gene_annotation"],
                                      x["peak_vocab_matrix"], x["translation_splits"], spec)
    checks = checks[(checks.method == "attention") & (checks.cells == "held_out") & checks.kind.isin(LINK_CHECKS)
                    & checks.subset.str.match("top|spearman")]
    return {"cells_read": n_cells, "seconds": round(seconds, 1),
            **{f"{LINK_CHECKS[k]} {s.split('(')[0]}".strip(): v for k, s, v in
               zip(checks.kind, checks.subset, checks.observed)}}


def _agreement(links: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """Per cell type, Spearman r of the cCREs' summed link scores and Jaccard of the specific cCREs;
    the means over cell types."""
    from scipy import stats

    from multiome_assets.links import analysis

    scores = [analysis.cre_link_scores(t).set_index(["cell_type", "cre"]).score for t in (links, reference)]
    specific = [analysis.celltype_specific(s.reset_index().assign(chrom="", start=0, end=0)) for s in scores]
    r, jaccard = [], []
    for cell_type in reference.cell_type.unique():
        a, b = (s.xs(cell_type).reindex(scores[1].xs(cell_type).index, fill_value=0.0) for s in scores)
        r.append(stats.spearmanr(a, b)[0])
        chosen = [set(t[(t.cell_type == cell_type) & t.specific].cre) for t in specific]
        jaccard.append(len(chosen[0] & chosen[1]) / max(len(chosen[0] | chosen[1]), 1))
    return {"cre_score_spearman": float(pd.Series(r).mean()), "specific_jaccard": float(pd.Series(jaccard).mean())}


def type_agreement(dataset: str, n: int | None, seed: int, x: dict) -> dict:
    """Each cell type's links at `n` cells (None: `max_link_cells`, every cell of a bundled type)
    against the warehouse translator's with every cell."""
    from multiome_assets.dataset import load_spec
    from multiome_assets.links import pipeline

    spec = load_spec(dataset)
    if "reference" not in x:
        x["reference"] = _attention_links(x, spec, x["translator_atac2rna"].model(pipeline.SCENARIO), 0,
                                          types_only=True, max_link_cells_per_type=None)[0]
    t = time.perf_counter()
    links, n_cells = _attention_links(x, spec, _model(x), seed, types_only=True, max_link_cells_per_type=n)
    return {"cells_read": n_cells, "seconds": round(time.perf_counter() - t, 1), **_agreement(links, x["reference"])}


def retrained(dataset: str, seed: int, x: dict):
    """The `random` scenario's ATAC→RNA translator trained again with another seed, as the asset trains it."""
    from multiome_assets.dataset import load_spec
    from multiome_assets.links import pipeline
    from multiome_assets.translation import pipeline as translation

    spec = load_spec(dataset)
    cells, _ = translation.load_cells(x["multiome"], x["gene_vocab_map"], x["peak_vocab_matrix"], spec)
    splits = x["translation_splits"][x["translation_splits"].scenario == pipeline.SCENARIO]
    return translation.train("atac2rna", cells, x["multiome"].rna.obs_names, splits,
                             profile=x["translator_atac2rna"].profile, device="cpu", seed=seed).model(pipeline.SCENARIO)


def test_metrics(dataset: str, n: int, seed: int, x: dict) -> dict:
    import mudata
    import numpy as np

    from multiome_assets.cells import cell_labels
    from multiome_assets.dataset import load_spec
    from multiome_assets.translation import pipeline

    spec = load_spec(dataset)
    cells, _ = pipeline.load_cells(x["multiome"], x["gene_vocab_map"], x["peak_vocab_matrix"], spec)
    labels = cell_labels(x["multiome"].rna.obs, spec.cell_type_column)
    out, rng = {}, np.random.default_rng(seed)
    for direction, name in (("rna2atac", "translated_atac"), ("atac2rna", "translated_rna")):
        sampled = {k: m[np.sort(rng.choice(m.n_obs, min(n, m.n_obs), replace=False))].copy()
                   for k, m in x[name].mod.items()}
        profiles = mudata.MuData(sampled)
        table = pipeline.evaluate(direction, profiles, cells, x["multiome"].rna.obs_names, x["translation_splits"],
                                  labels, x["translator_rna2atac"].thresholds)
        table = table[(table.scenario == "random") & table.metric.isin(TEST_METRICS[direction])]
        best = table[~table.method.isin(["cisformer", "measured"])].groupby("metric").value.max()
        mine = table[table.method == "cisformer"].set_index("metric").value
        out["test_cells"] = int(table.n_cells.iloc[0])
        out |= {f"{direction} {m}": mine[m] for m in TEST_METRICS[direction]}
        out |= {f"{direction} {m} − best baseline": mine[m] - best[m] for m in TEST_METRICS[direction]}
    return out


BUDGETS = {"links": (link_checks, ("gene_vocab_map", "gene_annotation", "translation_splits", "cre_gene_links"),
                     ("multiome", "peak_vocab_matrix", "translator_atac2rna")),
           "test": (test_metrics, ("gene_vocab_map", "translation_splits"),
                    ("multiome", "peak_vocab_matrix", "translator_rna2atac", "translated_atac", "translated_rna")),
           "types": (type_agreement, ("gene_vocab_map", "gene_annotation", "translation_splits"),
                     ("multiome", "peak_vocab_matrix", "translator_atac2rna"))}


def measure(budget: str, dataset: str, sizes: list[int], seeds: list[int], translator_seeds: list[int] = ()) -> pd.DataFrame:
    run, tables, artifacts = BUDGETS[budget]
    x, rows = load(dataset, tables, artifacts), []

    def add(row: dict) -> None:
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)

    for n in sizes:
        for seed in seeds:
            add({"dataset": dataset, "cells": n, "seed": seed, **run(dataset, n, seed, x)})
    for seed in translator_seeds:  # the seed noise: another translator, the profile's own cells
        x["model"] = retrained(dataset, seed, x)
        add({"dataset": dataset, "cells": f"translator seed {seed}", "seed": 0, **run(dataset, None, 0, x)})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    metrics = [c for c in table.columns if c not in ("dataset", "cells", "seed", "seconds")]
    grouped = table.assign(cells=table.cells.astype(str)).groupby("cells", sort=False)[metrics]
    mean, sd = grouped.mean(), grouped.std().fillna(0)
    return (mean.round(3).astype(str) + " ± " + sd.round(3).astype(str)).T


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("budget", choices=sorted(BUDGETS))
    parser.add_argument("--dataset", default="bmmc_starter")
    parser.add_argument("--cells", type=int, nargs="+", default=[100, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--translator-seeds", type=int, nargs="*", default=[],
                        help="types: retrain the translator with these seeds (its seed noise)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    table = measure(args.budget, args.dataset, args.cells, args.seeds, args.translator_seeds)
    print(summary(table).to_markdown())
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
