"""GRN metrics over candidate windows and seeds: which differences are larger than the noise?

Seed s re-splits the prior edges (split seed s: another 20% of edges, another 20% of TFs held
out) and retrains the backbones (seed 42 + s) and the BCE heads (seed 42 + s); seed 0 with the
dataset's window is `make demo`'s setting. Per window only the full backbone is retrained: the
RNA-only backbone, the SVD embedding and the expression baselines do not depend on it, and the
baselines not on the seed either. Metrics as in `grn_metrics`, without the random-network
p-values. The table gives mean ± sd over seeds and the paired difference of every method to a
reference method (`--reference`, default the full model) on the same window, split and seed, in
AUROC or another metric (`--metric`), with the number of seeds on which the method is ahead and a
Wilcoxon signed-rank p-value. `--inputs` limits the heads (backbones are trained only for the heads
that read them), e.g. `--inputs svd` re-scores the no-pretraining head alone.

Reads the foundation assets of a built warehouse (`make demo`, or
`multiome-assets build --select 'group:foundation'`):

    python benchmarks/grn_sweep.py --dataset snareseq_hesc --seeds 0 1 2
    python benchmarks/grn_sweep.py --dataset bmmc_starter --windows 5000 50000 100000 --seeds 0 1 2 3 4
    python benchmarks/grn_sweep.py --dataset bmmc_starter --seeds $(seq 0 19) --out bmmc.csv
    python benchmarks/grn_sweep.py --dataset bmmc_starter --prior collectri --seeds $(seq 0 19) --out bmmc_collectri.csv
    python benchmarks/grn_sweep.py --summarize bmmc.csv --reference grnboost2 --metric degree_matched_auroc
    python benchmarks/grn_sweep.py --dataset bmmc_starter --profile paper --inputs full svd --seeds 0 1 2 3 --out paper.csv
    python benchmarks/grn_sweep.py --summarize bmmc.csv paper.csv --seeds 0 1 2 3   # cpu vs paper on the same splits

Each row records the `profile` and the `--set` settings it ran with and, for the heads on a
backbone, how its training ended (epochs run, the epoch kept, its validation NB NLL). `--summarize` takes several
CSVs: when they hold more than one (profile, settings) variant, the methods that depend on them
are named `method [variant]` (e.g. `epiawarenet_bce [paper]`) and compared on the seeds they
share; the baselines, which do not, are taken once.

`--prior` swaps the dataset's prior (dorothea, collectri or a source,target CSV/TSV) for the sweep,
with the dataset's TF list and the same seeded splits; without it the warehouse's prior_edges are used.

On 2 cores a SNARE-seq seed trains two backbones (~18 min); a BMMC seed takes ~1 min. With `--out`
each seed's rows are appended as soon as it is done.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multiome_assets import intervals, warehouse  # noqa: E402
from multiome_assets.dataset import REFERENCE_FILES, load_spec, reference_path  # noqa: E402
from multiome_assets.grn import baselines, pipeline  # noqa: E402
from multiome_assets.grn.artifacts import BaselineScores, GeneEmbeddings, HeadInput  # noqa: E402
from multiome_assets.priors import SPLITS, load_prior_edges, read_tf_list, resplit  # noqa: E402
from multiome_assets.stats import paired_comparison  # noqa: E402

INPUTS = ("full", "rna_only", "svd", "full+degree", "rna_only+degree", "degree")
WINDOW_FREE = ("rna_only", "svd", "rna_only+degree", "degree")  # heads whose input does not depend on the window
METRICS = ("auroc", "auprc_ratio", "per_target_auroc_macro")


def _value(text: str):
    """'3' -> 3, '1e-3' -> 0.001, 'svd' -> 'svd'."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _stamp(message: str, t0: float) -> None:
    tqdm.write(f"{message}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def _width(profile: str) -> int:
    """d_model of the profile's backbone (the SVD embedding has the backbone's width)."""
    from multiome_assets.grn.pretrain import PROFILES
    from multiome_assets.models.grn_transformer import GRNTransformerConfig

    return GRNTransformerConfig(n_genes=1, n_peaks=1, **PROFILES[profile][0]).d_model


TRAINING_END = ("backbone_epochs", "backbone_best_epoch", "backbone_val_loss")


def training_end(backbone) -> dict:
    """Epochs a backbone ran, the epoch whose weights it kept (0: the untrained start) and its
    validation NB NLL: whether early stopping cut the run short is then in the CSV."""
    return dict(zip(TRAINING_END, (int(backbone.history.epoch.max()), backbone.best_epoch, backbone.best_val_loss)))


def run_seed(seed: int, windows: list[int], inputs: tuple[str, ...], mo, annotation, prior_edges, regulators,
             expression_scores, profile: str, device: str, overrides: dict,
             embed_cells: int | None = None, head_epochs: int = 20) -> pd.DataFrame:
    """Metrics of every method at every window for one seed. `embed_cells`: the embeddings average
    a seeded sample of that many cells (the assets' `embed_cells_per_set` budget) instead of all."""
    genes = mo.rna.var_names
    prior = resplit(prior_edges, seed=seed)
    backbone_seed = 42 + seed
    cells = np.arange(mo.n_cells)
    if embed_cells is not None and embed_cells < mo.n_cells:
        cells = np.sort(np.random.default_rng(backbone_seed).choice(cells, embed_cells, replace=False))
    sets = {"all": cells}
    # the backbones' starting identities: same width, same seed
    embeddings = {"svd": pipeline.svd_embeddings(mo, sets, _width(profile), seed=backbone_seed,
                                                 solver=overrides.get("svd_solver", "randomized"))}
    trained = {}  # backbone ("full", "rna_only") -> how its training ended
    if {"rna_only", "rna_only+degree"} & set(inputs):
        t0 = time.perf_counter()
        ckpt = pipeline.pretrain(mo, None, profile=profile, device=device, seed=backbone_seed, **overrides)
        embeddings["rna_only"], trained["rna_only"] = pipeline.embed(ckpt, mo, sets, device), training_end(ckpt)
        _stamp(f"seed {seed}, RNA-only backbone", t0)
    rows = []
    for i, window in enumerate(tqdm(windows, desc=f"seed {seed}: windows", file=sys.stderr, leave=False)):
        window_inputs = inputs if i == 0 else tuple(x for x in inputs if x not in WINDOW_FREE)
        if not window_inputs and i > 0:
            continue
        t0 = time.perf_counter()
        if {"full", "full+degree"} & set(window_inputs):
            candidates = intervals.candidate_sets(annotation, mo.atac.var, window, 50)
            ckpt = pipeline.pretrain(mo, candidates, profile=profile, device=device, seed=backbone_seed, **overrides)
            embeddings["full"], trained["full"] = pipeline.embed(ckpt, mo, sets, device), training_end(ckpt)
        grn_embeddings = GeneEmbeddings(list(genes), sets, embeddings)
        head_inputs = tuple(HeadInput.from_name(x) for x in window_inputs)
        heads = pipeline.train_heads(grn_embeddings, prior, genes, regulators, epochs=head_epochs, seed=backbone_seed,
                                     device=device, inputs=head_inputs, objectives=("bce",),
                                     splits=SPLITS) if head_inputs else None
        for split in SPLITS:
            space = pipeline.edge_space(prior, genes, split)
            methods = pipeline.method_scores(space, split, grn_embeddings, heads, expression_scores, [], device,
                                             inputs=head_inputs, objectives=("bce",))
            metrics, _ = pipeline.evaluate_methods(methods, space, n_random=0, top_n=100)
            backbone = metrics.method.map({x.method("bce"): x.embedding for x in head_inputs})
            ends = pd.DataFrame([trained.get(b, {}) for b in backbone], index=metrics.index, columns=TRAINING_END)
            rows.append(pd.concat([metrics, ends], axis=1).assign(split=split, seed=seed, window=window))
        _stamp(f"seed {seed}, window {window}", t0)
    runs = pd.concat(rows, ignore_index=True)
    # window-free heads were trained at the first window only: copy their rows to the others
    window_dependent = [HeadInput.from_name(x).method("bce") for x in INPUTS if x not in WINDOW_FREE]
    free = runs[(runs.window == windows[0]) & ~runs.method.isin(window_dependent)]
    copies = [free.assign(window=w) for w in windows[1:]]
    return pd.concat([runs, *copies], ignore_index=True).drop_duplicates(["split", "seed", "window", "method"])


SETTINGS_FREE_KINDS = ("baseline", "degree_baseline")  # rows that depend on neither the profile nor --set


def variant(runs: pd.DataFrame) -> pd.Series:
    """'paper', 'cpu', 'cpu svd_solver=arpack', ... per row; runs written before the columns existed are 'cpu'."""
    profile = runs["profile"].fillna("cpu") if "profile" in runs else pd.Series("cpu", index=runs.index)
    settings = runs["settings"].fillna("") if "settings" in runs else pd.Series("", index=runs.index)
    return (profile + " " + settings).str.strip()


def combine(tables: list[pd.DataFrame], seeds: list[int] | None = None) -> pd.DataFrame:
    """One table of runs from several CSVs; with more than one variant, each method that depends on
    it is named 'method [variant]' and the settings-free baselines are kept once per split and seed."""
    runs = pd.concat(tables, ignore_index=True)
    if seeds is not None:
        runs = runs[runs.seed.isin(seeds)]
    labels = variant(runs)
    if labels.nunique() > 1:
        budgeted = (runs.method == "grnboost2") & labels.str.contains("grnboost2_cells")  # its cell budget moved
        free = runs.kind.isin(SETTINGS_FREE_KINDS) & ~budgeted
        runs = runs.assign(method=runs.method.where(free, runs.method + " [" + labels + "]"))
        runs = runs.drop_duplicates(["window", "split", "seed", "method"])
    return runs.reset_index(drop=True)


def _mean_sd(values: pd.Series, sign: str = "") -> str:
    mean = format(values.mean(), f"{sign}.3f")
    return f"{mean} ± {values.std(ddof=1):.3f}" if len(values) > 1 else mean


def _wilcoxon(diff: pd.Series) -> str:
    """Two-sided signed-rank p of paired differences (exact for few seeds; '' when all are 0)."""
    p = paired_comparison(diff)["pvalue"]
    return "" if np.isnan(p) else f"{p:.2g}"


def summary(runs: pd.DataFrame, reference: str = "epiawarenet_bce", metric: str = "auroc") -> str:
    """Markdown: mean ± sd per (window, split, method), and each method's paired difference in `metric`
    to `reference` on the same window, split and seed: mean ± sd, seeds ahead, Wilcoxon p."""
    keys = ["window", "split", "seed"]
    if reference not in set(runs.method):
        raise SystemExit(f"--reference {reference!r} is not among the methods: {sorted(set(runs.method))}")
    if metric not in runs.columns:
        raise SystemExit(f"--metric {metric!r} is not a column of the runs: {sorted(runs.columns)}")
    ref = runs[runs.method == reference].set_index(keys)[metric]
    order = {m: i for i, m in enumerate(runs.method.unique())}
    runs = runs.sort_values(["window", "split", "method"], key=lambda c: c.map(order) if c.name == "method" else c)
    lines = ["| window | split | method | AUROC | AUPRC ratio | per-target AUROC "
             f"| {metric} − {reference} (paired) | seeds ahead | Wilcoxon p |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (window, split, method), g in runs.groupby(["window", "split", "method"], sort=False):
        diff = g.set_index(keys)[metric] - ref
        paired = ["", "", ""] if method == reference else [
            _mean_sd(diff, sign="+"), f"{(diff > 0).sum()}/{diff.count()}", _wilcoxon(diff)]
        cells = [_mean_sd(g[m]) for m in METRICS]
        lines.append(f"| {window // 1000} kb | {split} | {method} | " + " | ".join(cells + paired) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="snareseq_hesc")
    p.add_argument("--windows", type=int, nargs="+", help="bp either side of the TSS (default: the dataset's)")
    p.add_argument("--seeds", type=int, nargs="+", help="edge splits (default 0 1 2; with --summarize: every seed)")
    p.add_argument("--baselines", nargs="*", default=["pearson", "grnboost2"], help="expression baselines (none: only the degree ones)")
    p.add_argument("--inputs", nargs="*", default=list(INPUTS), choices=INPUTS,
                   help="heads to train and score (none: the baselines alone)")
    p.add_argument("--profile", default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--set", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="override PretrainConfig fields of the profile, e.g. peak_id_init=svd max_epochs=3")
    p.add_argument("--embed-cells", type=int, help="embeddings from a seeded sample of this many cells (a budget)")
    p.add_argument("--head-epochs", type=int, default=20,
                   help="epochs of every head (EdgeHeadConfig's 20; min_steps still applies): a budget")
    p.add_argument("--grnboost2-cells", type=int,
                   help="GRNBoost2 on a sample of this many cells, drawn and trained afresh with each seed (a budget)")
    p.add_argument("--prior", help="dorothea, collectri or a source,target CSV/TSV (default: the dataset's prior)")
    p.add_argument("--out", help="also write every run's metrics to this CSV")
    p.add_argument("--reference", default="epiawarenet_bce", help="method the paired differences are taken to")
    p.add_argument("--metric", default="auroc", help="metric of the paired differences, e.g. degree_matched_auroc")
    p.add_argument("--summarize", metavar="CSV", nargs="+", help="print the table of earlier runs' --out CSVs; train nothing")
    args = p.parse_args()
    if args.summarize:
        print(summary(combine([pd.read_csv(f) for f in args.summarize], args.seeds), args.reference, args.metric))
        return
    seeds = args.seeds or [0, 1, 2]

    overrides = {k: _value(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    spec = load_spec(args.dataset)
    windows = args.windows or [spec.candidate_window]
    try:
        mo = warehouse.read_artifact(warehouse.find_artifact("multiome", args.dataset))
        annotation = warehouse.read_table("gene_annotation", args.dataset)
        prior_edges = warehouse.read_table("prior_edges", args.dataset)
    except FileNotFoundError as e:
        sys.exit(f"{e}\nbuild the foundation assets first: multiome-assets build --dataset {args.dataset} "
                 "--select 'group:foundation'")
    genes = mo.rna.var_names
    tfs = read_tf_list(spec.tf_list)
    if args.prior:
        path = reference_path(args.prior) if args.prior in REFERENCE_FILES else Path(args.prior)
        prior_edges = load_prior_edges(path, genes, tfs)
    print(f"prior {prior_edges.prior.iloc[0]}: {len(prior_edges)} edges, {prior_edges.tf.nunique()} TFs",
          file=sys.stderr)
    regulators = pipeline.regulator_universe(genes, tfs)
    settings = " ".join(args.set + [f"{flag}={n}" for flag, n in (("embed_cells", args.embed_cells),
                                                                   ("grnboost2_cells", args.grnboost2_cells)) if n]
                        + ([f"head_epochs={args.head_epochs}"] if args.head_epochs != 20 else []))

    def expression_scores(seed: int) -> BaselineScores:
        t0 = time.perf_counter()
        scores = baselines.expression_baselines(args.baselines, mo.rna.X, np.asarray(genes), regulators, seed=seed,
                                                grnboost2_max_cells=args.grnboost2_cells)
        _stamp(f"baselines {', '.join(args.baselines)}", t0)
        return BaselineScores(regulators, np.asarray(genes), scores)

    shared = None if args.grnboost2_cells else expression_scores(0)  # a budget draws its cells per seed
    runs = []
    for seed in tqdm(seeds, desc="seeds", file=sys.stderr):
        runs.append(run_seed(seed, windows, tuple(args.inputs), mo, annotation, prior_edges, regulators,
                             shared or expression_scores(seed), args.profile, args.device, overrides, args.embed_cells,
                             args.head_epochs)
                    .assign(prior=prior_edges.prior.iloc[0], profile=args.profile, settings=settings))
        if args.out:  # a crash in a later seed keeps the seeds done
            runs[-1].to_csv(args.out, index=False, mode="w" if len(runs) == 1 else "a", header=len(runs) == 1)
    runs = pd.concat(runs, ignore_index=True)
    print(f"\n{args.dataset}, prior {prior_edges.prior.iloc[0]}: GRN metrics over seeds {seeds}, windows {windows} "
          f"(profile {args.profile} {settings}; mean ± sd over seeds)\n")
    print(summary(runs, args.reference, args.metric))


if __name__ == "__main__":
    main()
