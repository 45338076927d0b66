"""What the `cpu` profile's departures from the Cisformer reference, and its compute budgets, cost,
measured on a bundled dataset.

`random` split, the `cpu` profile as the assets train it, against the same profile with one
setting (`FIELD=VALUE` of TranslatorConfig or TrainConfig) changed at a time, over several seeds
(the seed moves the split's model init and token draws, not the split). The departures (RNA→ATAC):

- `max_source`: 512 expressed genes per cell (a random subset above) against 2,048, the reference
  code's `enc_max_len` (on SNARE-seq, whose cells hold 188-1,493 genes, that is every expressed gene);
- `head_layers`: the two-layer output head against the reference's one linear layer;
- clustering of the translated test cells: K-means with the true number of types (what
  `translation_metrics` reports) against Leiden at resolution 1 on a 15-NN graph (the paper's), when
  `leidenalg` is installed.

    python benchmarks/translation_deviations.py --dataset snareseq_hesc --seeds 0 1
    # a budget made to bind: half the training cells per epoch (docs/performance.md#budgets)
    python benchmarks/translation_deviations.py --dataset bmmc_starter --direction atac2rna \
        --settings cpu cells_per_epoch=180 --seeds 0 1 2
    python benchmarks/translation_deviations.py --dataset bmmc_starter --seeds 0 1 2

Prints one row per (setting, seed) and the mean ± sd per setting.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _cells(dataset: str):
    sys.path.insert(0, str(ROOT))
    from multiome_assets import annotation
    from multiome_assets.cells import cell_labels
    from multiome_assets.dataset import load_spec, reference_path
    from multiome_assets.intervals import binarize_to_vocab, peak_to_vocab, read_ccre_bed
    from multiome_assets.preprocess import preprocess
    from multiome_assets.readers import read_dataset
    from multiome_assets.translation.pipeline import load_cells, splits

    spec = load_spec(dataset)
    mo, _ = preprocess(read_dataset(spec), spec.qc, spec.rna_values)
    genes = annotation.match_genes(mo.rna.var_names, mo.rna.var.get("gene_ids"), annotation.read_annotation(spec.annotation))
    vocab_map = annotation.map_to_vocab(genes, annotation.read_gene_vocab(reference_path("gene_vocab_38244")))
    vocab = read_ccre_bed(reference_path("ccre_hg38"))
    cells, _ = load_cells(mo, vocab_map, binarize_to_vocab(mo.atac.X, peak_to_vocab(mo.atac.var, vocab)), spec)
    return cells, mo.rna.obs_names, splits(mo, spec.batch_column, spec.cell_type_column), \
        cell_labels(mo.rna.obs, spec.cell_type_column)


def leiden_ari(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """ARI of Leiden clusters (resolution 1, 15-NN graph of the top 20 PCs) against the labels."""
    import anndata as ad
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score

    a = ad.AnnData(np.asarray(x, dtype=np.float32))
    sc.pp.pca(a, n_comps=min(20, min(a.shape) - 1), random_state=seed)
    sc.pp.neighbors(a, n_neighbors=15, random_state=seed)
    sc.tl.leiden(a, resolution=1.0, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
    return float(adjusted_rand_score(labels, a.obs.leiden))


def configs(direction: str, setting: str, seed: int):
    """The `cpu` profile's (TranslatorConfig, TrainConfig) with one setting changed: 'cpu' (none) or
    'FIELD=VALUE' of either config."""
    import json
    from dataclasses import fields

    from multiome_assets.translation.train import training_config, translator_config

    model_config, config = translator_config(direction, "cpu"), training_config(direction, "cpu", seed)
    if setting == "cpu":
        return model_config, config
    field, _, text = setting.partition("=")
    value = json.loads(text)
    if field in {f.name for f in fields(config)}:
        return model_config, replace(config, **{field: value})
    if field in {f.name for f in fields(model_config)}:
        return replace(model_config, **{field: value}), config
    raise SystemExit(f"{setting!r}: {field} is a field of neither TranslatorConfig nor TrainConfig")


def run(cells, names, split_table, labels, direction: str, setting: str, seed: int) -> dict:
    from multiome_assets.translation import metrics
    from multiome_assets.translation.pipeline import measured
    from multiome_assets.translation.predict import translate_atac, translate_rna
    from multiome_assets.translation.splits import rows_of
    from multiome_assets.translation.train import train_translator

    model_config, config = configs(direction, setting, seed)
    train, val, test = (rows_of(split_table, names, "random", r) for r in ("train", "validation", "test"))
    upper = float(np.log1p(cells.rna[train].max())) if direction == "atac2rna" else 1.0
    t = time.perf_counter()
    model, history = train_translator(model_config=model_config, config=config, cells=cells, train_rows=train,
                                      val_rows=val, upper=upper)
    row = {"setting": setting, "seed": seed, "epochs": len(history), "train_s": round(time.perf_counter() - t, 1)}
    truth = measured(direction, cells)
    if direction == "atac2rna":
        predicted = translate_rna(model, cells, test, upper, gene_chunk=config.n_queries, max_cres=config.max_source,
                                  seed=seed)
        return row | metrics.rna_metrics(predicted, truth[test])

    def predict(rows):
        return translate_atac(model, cells, rows, cre_chunk=config.n_queries, max_genes=config.max_source, seed=seed)

    threshold = metrics.calibrate_threshold(predict(val), truth[val])
    predicted = predict(test)
    values = metrics.atac_metrics(predicted, truth[test], threshold, None if labels is None else labels[test])
    row |= {k: values[k] for k in ("per_cre_auroc_macro", "auroc", "auprc", "f1", "prediction_spread")}
    if labels is not None:
        row |= {k: v for k, v in metrics.clustering_scores(predicted, labels[test]).items() if k in ("ari", "ami")}
        try:
            row["leiden_ari"] = leiden_ari(predicted, labels[test], seed)
        except ImportError:
            row["leiden_ari"] = np.nan
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="snareseq_hesc")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--direction", choices=("rna2atac", "atac2rna"), default="rna2atac")
    parser.add_argument("--settings", nargs="+", default=["cpu", "max_source=2048", "head_layers=1"],
                        help="'cpu' and FIELD=VALUE changes of its TranslatorConfig or TrainConfig, one at a time")
    args = parser.parse_args()
    cells, names, split_table, labels = _cells(args.dataset)
    rows = []
    for setting in args.settings:
        for seed in args.seeds:
            rows.append(run(cells, names, split_table, labels, args.direction, setting, seed))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    table = pd.DataFrame(rows)
    summary = table.drop(columns="seed").groupby("setting", sort=False).agg(["mean", "std"])
    print(f"\n{args.dataset}, {args.direction}, random split, seeds {args.seeds}\n")
    print(summary.round(4).to_markdown())


if __name__ == "__main__":
    main()
