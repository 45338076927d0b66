"""Choose Stage 2 head settings without the held-out edges: inner splits of the training edges.

For each seed s, the prior is split as in `grn_sweep.py` (split seed s); of each split's training
edges, an inner split of the same kind (seed 1000 + s) holds out 20% of edges (random) or of TFs
(TF-held-out). Heads train on the inner training edges and are scored on the inner held-out
ones; the outer held-out edges stay unlabeled, as they are for the reported heads. Settings:

    bce min_steps=0      20 epochs and nothing more (the paper's schedule)
    bce min_steps=400    20 epochs, at least 400 optimizer steps (the default)
    nnpu pi=...          nnPU with class prior pi, at least 400 steps

on the frozen embeddings of a built warehouse (`make demo`): the full backbone and its SVD start.
On the inner TF-held-out split also the degree-only BCE head reading the in-degree (the default
there: every evaluated regulator has out-degree 0) or out- and in-degree.

    python benchmarks/head_selection.py --dataset bmmc_starter --seeds 0 1 2 3 4
    python benchmarks/head_selection.py --dataset snareseq_hesc --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multiome_assets import warehouse  # noqa: E402
from multiome_assets.dataset import load_spec  # noqa: E402
from multiome_assets.grn import pipeline  # noqa: E402
from multiome_assets.grn.artifacts import BaselineScores, GeneEmbeddings, HeadInput  # noqa: E402
from multiome_assets.priors import SPLITS, read_tf_list, resplit, split_frames  # noqa: E402


def inner_prior(prior_edges: pd.DataFrame, split: str, seed: int) -> pd.DataFrame:
    """The outer split's training edges, split again (same kinds of split) with `seed`."""
    train, _ = split_frames(resplit(prior_edges, seed=seed), split)
    return resplit(train.reset_index(drop=True), seed=1000 + seed)


def degree_heads(inner: pd.DataFrame, space, genes: pd.Index, regulators, seed: int, device: str) -> dict:
    """TF-held-out scores of the degree-only BCE head reading in-degree, or out- and in-degree."""
    from multiome_assets.grn.head import score_all_pairs, train_edge_head
    from multiome_assets.models.edge_head import EdgeHeadConfig

    positives = pipeline.train_pairs(inner, "tf_heldout", genes, regulators)
    no_embedding = np.zeros((len(genes), 0), dtype=np.float32)
    scores = {}
    for degrees in (("in",), ("out", "in")):
        config = EdgeHeadConfig(epochs=20, seed=42 + seed, degree_features=degrees)
        head, _ = train_edge_head(no_embedding, genes.get_indexer(regulators), positives, config, device=device)
        scores["+".join(degrees)] = score_all_pairs(head, no_embedding, genes.get_indexer(space.regulators), device=device)
    return scores


def run_seed(seed: int, grn_embeddings: GeneEmbeddings, prior_edges: pd.DataFrame, genes: pd.Index, regulators,
             settings: list[tuple[str, str, dict]], inputs: tuple[HeadInput, ...], device: str) -> pd.DataFrame:
    no_baselines = BaselineScores(regulators, genes.to_numpy(), {})
    rows = []
    for split in SPLITS:
        inner = inner_prior(prior_edges, split, seed)
        space = pipeline.edge_space(inner, genes, split)
        for label, objective, head_args in settings:
            heads = pipeline.train_heads(grn_embeddings, inner, genes, regulators, epochs=20, seed=42 + seed,
                                         device=device, inputs=inputs, objectives=(objective,), splits=(split,),
                                         **head_args)
            methods = pipeline.method_scores(space, split, grn_embeddings, heads, no_baselines, [], device,
                                             inputs=inputs, objectives=(objective,))
            methods = {k: v for k, v in methods.items() if not k.startswith("degree_")}
            metrics, _ = pipeline.evaluate_methods(methods, space, n_random=0, top_n=100)
            rows.append(metrics.assign(setting=label, split=split, seed=seed))
        if split == "tf_heldout":
            for degrees, scores in degree_heads(inner, space, genes, regulators, seed, device).items():
                metrics, _ = pipeline.evaluate_methods({"mlp_degree_bce": scores}, space, n_random=0, top_n=100)
                rows.append(metrics.assign(setting=f"degrees={degrees}", split=split, seed=seed))
        tqdm.write(f"seed {seed}, {split} done", file=sys.stderr)
    return pd.concat(rows, ignore_index=True)


def table(runs: pd.DataFrame) -> str:
    cols = {"auroc": "AUROC", "auprc_ratio": "AUPRC ratio", "degree_matched_auroc": "degree-matched AUROC"}
    g = runs.groupby(["split", "method", "setting"], sort=False)[list(cols)]
    mean, sd = g.mean(), g.std(ddof=1)
    lines = ["| inner split | head input | setting | " + " | ".join(cols.values()) + " |", "|---" * (3 + len(cols)) + "|"]
    for (split, method, setting), m in mean.iterrows():
        cells = [f"{m[c]:.3f} ± {sd.loc[(split, method, setting), c]:.3f}" for c in cols]
        lines.append(f"| {split} | {method} | {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (before, after) settings whose paired comparison docs/grn.md reports
COMPARISONS = (("min_steps=0", "min_steps=400"), ("pi=0.01", "pi=0.05"), ("degrees=out+in", "degrees=in"))


def comparisons(runs: pd.DataFrame) -> str:
    """Markdown: inner AUROC before → after each change of COMPARISONS, mean over seeds, with the
    seeds on which `after` is ahead (paired by seed, split and head input)."""
    auc = runs.set_index(["split", "method", "setting", "seed"]).auroc
    lines = ["| inner split | head input | change | AUROC before → after | seeds ahead |", "|---" * 5 + "|"]
    for before, after in COMPARISONS:
        for (split, method), g in auc.groupby(level=["split", "method"], sort=False):
            settings = set(g.index.get_level_values("setting"))
            if before not in settings or after not in settings:
                continue
            a, b = g.xs(before, level="setting"), g.xs(after, level="setting")
            lines.append(f"| {split} | {method} | {before} → {after} | {a.mean():.3f} → {b.mean():.3f} "
                         f"| {int((b > a).sum())}/{len(b)} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="bmmc_starter")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--pis", type=float, nargs="+", default=[0.001, 0.01, 0.05], help="nnPU class priors to try")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="also write every run's metrics to this CSV")
    args = p.parse_args()

    try:
        mo = warehouse.read_artifact(warehouse.find_artifact("multiome", args.dataset))
        grn_embeddings = warehouse.read_artifact(warehouse.find_artifact("grn_embeddings", args.dataset))
        prior_edges = warehouse.read_table("prior_edges", args.dataset)
    except FileNotFoundError as e:
        sys.exit(f"{e}\nbuild the GRN assets first: make demo")
    genes = mo.rna.var_names
    regulators = pipeline.regulator_universe(genes, read_tf_list(load_spec(args.dataset).tf_list))
    settings = [("min_steps=0", "bce", {"min_steps": 0}), ("min_steps=400", "bce", {}),
                *((f"pi={pi:g}", "nnpu", {"prior_pi": pi}) for pi in args.pis)]
    runs = pd.concat([run_seed(s, grn_embeddings, prior_edges, genes, regulators, settings, (HeadInput("full"), HeadInput("svd")),
                               args.device) for s in tqdm(args.seeds, desc="seeds", file=sys.stderr)],
                     ignore_index=True)
    if args.out:
        runs.to_csv(args.out, index=False)
    print(f"\n{args.dataset}: head settings on inner splits of the training edges, seeds {args.seeds} "
          "(mean ± sd over seeds)\n")
    print(table(runs))
    print()
    print(comparisons(runs))


if __name__ == "__main__":
    main()
