"""GRN metrics over seeds: which differences between methods are larger than the noise?

Seed s re-splits the prior edges (split seed s: another 20% of edges, another 20% of TFs held
out) and retrains the backbones (full and RNA-only, seed 42 + s) and the BCE heads (seed 42 + s);
seed 0 is `make demo`'s setting. The expression baselines do not depend on the split and are
computed once. Metrics as in `grn_metrics`, without the random-network p-values. The table gives
mean ± sd over seeds and, for the ablations, the paired difference to the full model.

Reads the foundation assets of a built warehouse (`make demo`, or
`multiome-assets build --select 'group:foundation'`):

    python benchmarks/grn_seeds.py --dataset snareseq_hesc --seeds 0 1 2
    python benchmarks/grn_seeds.py --dataset bmmc_starter --seeds 0 1 2 3 4 --baselines pearson grnboost2

One SNARE-seq seed trains two backbones (~10-15 min on 2 cores); a BMMC seed takes ~1 min.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multiome_assets import warehouse  # noqa: E402
from multiome_assets.dataset import load_spec  # noqa: E402
from multiome_assets.grn import baselines, pipeline  # noqa: E402
from multiome_assets.priors import read_tf_list, split_edges  # noqa: E402

INPUTS = ("full", "rna_only", "svd", "full+degree", "rna_only+degree", "degree")
SPLITS = ("random", "tf_heldout")
METRICS = ("auroc", "auprc_ratio", "per_target_auroc_macro")


def run_seed(seed: int, mo, candidates, prior_edges, regulators, expression_scores, profile: str, device: str) -> pd.DataFrame:
    genes = mo.rna.var_names
    prior = split_edges(prior_edges.drop(columns=["split_random", "split_tf_heldout"]), seed=seed).assign(split_seed=seed)
    sets = {"all": np.arange(mo.n_cells)}
    embeddings = {}
    for variant, cands in (("full", candidates), ("rna_only", None)):
        ckpt = pipeline.pretrain(mo, cands, profile=profile, device=device, seed=42 + seed)
        embeddings[variant] = pipeline.embed(ckpt, mo, sets, device)
    embeddings["svd"] = pipeline.svd_embeddings(mo, sets, embeddings["full"]["all"].shape[1], seed=seed)
    grn_embeddings = {"gene_names": list(genes), "embeddings": embeddings}
    heads = pipeline.train_heads(grn_embeddings, prior, genes, regulators, epochs=20, prior_pi=0.01, seed=42 + seed,
                                 device=device, inputs=INPUTS, objectives=("bce",), splits=SPLITS)
    rows = []
    for split in SPLITS:
        space = pipeline.edge_space(prior, genes, split)
        methods = pipeline.method_scores(space, split, grn_embeddings, heads, expression_scores, [], device,
                                         inputs=INPUTS, objectives=("bce",))
        metrics, _ = pipeline.evaluate_methods(methods, space, n_random=0, top_n=100)
        rows.append(metrics.assign(split=split, seed=seed))
    return pd.concat(rows, ignore_index=True)


def summary(runs: pd.DataFrame) -> str:
    """Markdown: mean ± sd per (split, method); ablations also as the paired difference to the full model."""
    full = runs[runs.method == "epiawarenet_bce"].set_index(["split", "seed"])
    lines = ["| split | method | AUROC | AUPRC ratio | per-target AUROC | AUROC - full model (paired) |",
             "|---|---|---|---|---|---|"]
    for (split, method), g in runs.groupby(["split", "method"], sort=False):
        cells = [f"{g[m].mean():.3f} ± {g[m].std(ddof=1):.3f}" if len(g) > 1 else f"{g[m].mean():.3f}" for m in METRICS]
        diff = g.set_index(["split", "seed"]).auroc - full.auroc.reindex(g.set_index(["split", "seed"]).index)
        paired = "" if method == "epiawarenet_bce" else (
            f"{diff.mean():+.3f} ± {diff.std(ddof=1):.3f}" if len(diff) > 1 else f"{diff.mean():+.3f}")
        lines.append(f"| {split} | {method} | " + " | ".join(cells) + f" | {paired} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="snareseq_hesc")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--baselines", nargs="+", default=["pearson", "grnboost2"])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="also write every seed's metrics to this CSV")
    args = p.parse_args()

    try:
        mo = warehouse.read_artifact(warehouse.find_artifact("multiome", args.dataset))
        candidates = warehouse.read_table("candidate_sets", args.dataset)
        prior_edges = warehouse.read_table("prior_edges", args.dataset)
    except FileNotFoundError as e:
        sys.exit(f"{e}\nbuild the foundation assets first: multiome-assets build {args.dataset} --select 'group:foundation'")
    genes = mo.rna.var_names
    regulators = pipeline.regulator_universe(genes, read_tf_list(load_spec(args.dataset).tf_list))
    t0 = time.perf_counter()
    scores = {name: baselines.BASELINES[name](mo.rna.X, np.asarray(genes), regulators,
                                              **({"seed": 0} if name == "grnboost2" else {})) for name in args.baselines}
    expression_scores = {"regulators": regulators, "scores": scores}
    print(f"baselines {', '.join(args.baselines)}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    runs = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        runs.append(run_seed(seed, mo, candidates, prior_edges, regulators, expression_scores, args.profile, args.device))
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    runs = pd.concat(runs, ignore_index=True)
    if args.out:
        runs.to_csv(args.out, index=False)
    print(f"\n{args.dataset}: GRN metrics over seeds {args.seeds} (profile {args.profile}; mean ± sd)\n")
    print(summary(runs))


if __name__ == "__main__":
    main()
