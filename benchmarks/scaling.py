"""Scaling of the pipeline's stages with cells (N) and genes (G), on calibrated simulated data.

For each size a dataset is simulated (:func:`multiome_assets.simulate.dataset.simulate_dataset`,
peaks = 5 x genes) and each stage runs in a fresh subprocess, so that its peak RSS
(``ru_maxrss``) is its own. A stage's inputs are built in that subprocess before the clock starts;
``rss_before_gb`` is the peak RSS once they are built, ``peak_rss_gb`` the peak after the stage.
The stages call the plain functions behind the Dagster assets:

- ``read_qc``: ``readers.read_dataset`` + ``preprocess.preprocess`` (asset ``multiome``)
- ``candidates``: ``annotation.match_genes`` + ``intervals.candidate_sets`` (``gene_annotation``,
  ``candidate_sets``)
- ``peak_vocab``: ``intervals.peak_to_vocab`` + ``binarize_to_vocab`` (``peak_vocab_matrix``; the
  1M-row cCRE BED is read before the clock: it does not depend on the data's size)
- ``backbone_epoch``: ``grn.pipeline.pretrain`` with the ``cpu`` profile, one epoch (SVD start,
  training, validation; ``grn_backbone``)
- ``export``: ``grn.pipeline.export_scores`` (``edge_scores``), top 500 targets per TF
- ``evaluation``: ``grn.pipeline.evaluate_grn`` (``grn_evaluation``), 100 random networks

Export and evaluation read what the backbones, heads and baselines produce; their cost depends on
the shapes (genes, TFs, cell sets, methods), not on the values, so the benchmark builds them
cheaply: every backbone's embeddings are the SVD start (``pipeline.svd_embeddings``, d = 32), the
heads are the real ``pipeline.train_heads`` for 1 epoch, the baselines Pearson and Spearman
(GRNBoost2 and WGCNA left out). They are built once per size and kept in the work folder.

A backbone epoch predicted (linearly from the last measured size of its axis) to take longer than
``--max-seconds`` is not run; the table says so.

    python benchmarks/scaling.py --quick                          # a smoke run, a few minutes
    python benchmarks/scaling.py                                  # the table of docs/performance.md
    python benchmarks/scaling.py --cells 1000,5000 --genes 2000 --fixed-genes 2000 --fixed-cells 2000
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STAGES = ("read_qc", "candidates", "peak_vocab", "backbone_epoch", "export", "evaluation")
PEAKS_PER_GENE = 5


# ------------------------------------------------------------------------------------- worker
def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _read_qc(root: Path, key: str):
    from multiome_assets.dataset import load_spec
    from multiome_assets.preprocess import preprocess
    from multiome_assets.readers import read_dataset

    spec = load_spec(key, root)
    return spec, preprocess(read_dataset(spec), spec.qc, spec.rna_values, str(spec.yaml_path))[0]


def _candidates(spec, mo):
    from multiome_assets import annotation, intervals

    var = mo.rna.var
    genes = annotation.match_genes(var.index, var["gene_ids"], annotation.read_annotation(spec.annotation))
    return intervals.candidate_sets(genes, mo.atac.var, spec.candidate_window, 50)


def _grn_inputs(spec, mo, work: Path):
    """(prior edges, embeddings, heads, baselines), built once per dataset and kept in `work`."""
    path = work / f"{spec.key}_grn_inputs.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    from multiome_assets import priors
    from multiome_assets.cells import cell_labels, cell_sets
    from multiome_assets.grn import baselines, pipeline
    from multiome_assets.grn.artifacts import BaselineScores, GeneEmbeddings

    prior = priors.load_prior_edges(spec.prior, mo.rna.var_names, priors.read_tf_list(spec.tf_list))
    regulators = pipeline.regulator_universe(mo.rna.var_names, priors.read_tf_list(spec.tf_list))
    sets = cell_sets(cell_labels(mo.rna.obs, spec.cell_type_column), mo.n_cells)
    svd = pipeline.svd_embeddings(mo, sets, d=32, seed=0)
    embeddings = GeneEmbeddings(list(mo.rna.var_names), sets,
                                {name: svd for name in ("full", "rna_only", "random_candidates", "svd")}, "cpu")
    heads = pipeline.train_heads(embeddings, prior, mo.rna.var_names, regulators, seed=0, device="cpu",
                                 epochs=1, min_steps=1)
    genes = np.asarray(mo.rna.var_names)
    scores = baselines.expression_baselines(["pearson", "spearman"], mo.rna.X, genes, regulators)
    inputs = (prior, embeddings, heads, BaselineScores(regulators, genes, scores))
    path.write_bytes(pickle.dumps(inputs))
    return inputs


def run_stage(stage: str, root: Path, key: str, work: Path) -> dict:
    """Build the stage's inputs, then time the stage alone."""
    import torch

    torch.set_num_threads(2)
    if stage == "read_qc":
        t0 = time.perf_counter()
        _read_qc(root, key)
        return {"seconds": time.perf_counter() - t0, "rss_before_gb": 0.0}
    spec, mo = _read_qc(root, key)
    if stage == "peak_vocab":
        from multiome_assets import intervals
        from multiome_assets.dataset import reference_path

        vocab = intervals.read_ccre_bed(reference_path("ccre_hg38", root))
        before, t0 = _peak_rss_gb(), time.perf_counter()
        intervals.binarize_to_vocab(mo.atac.X, intervals.peak_to_vocab(mo.atac.var, vocab))
    elif stage == "candidates":
        before, t0 = _peak_rss_gb(), time.perf_counter()
        _candidates(spec, mo)
    elif stage == "backbone_epoch":
        from multiome_assets.grn import pipeline

        cands = _candidates(spec, mo)
        before, t0 = _peak_rss_gb(), time.perf_counter()
        pipeline.pretrain(mo, cands, profile="cpu", device="cpu", seed=0, max_epochs=1)
    else:
        from multiome_assets.grn import pipeline

        prior, embeddings, heads, base = _grn_inputs(spec, mo, work)
        before, t0 = _peak_rss_gb(), time.perf_counter()
        if stage == "export":
            pipeline.export_scores(embeddings, heads, base, prior, 500, device="cpu")
        else:
            pipeline.evaluate_grn(mo.rna.var_names, prior, embeddings, heads, base, external_grns=[], n_random=100,
                                  top_n=100, device="cpu", curves_path=lambda split: work / f"{key}_{split}.png")
    return {"seconds": time.perf_counter() - t0, "rss_before_gb": before}


# ------------------------------------------------------------------------------------- driver
def dataset_key(n_cells: int, n_genes: int) -> str:
    return f"scaling_n{n_cells}_g{n_genes}"


def ensure_dataset(root: Path, n_cells: int, n_genes: int) -> str:
    """The simulated dataset of this size under root/datasets (simulated once, kept)."""
    from multiome_assets.simulate.dataset import simulate_dataset

    key = dataset_key(n_cells, n_genes)
    if not (root / "datasets" / key / "dataset.yaml").exists():
        reference = root / "reference"
        if not reference.exists():
            reference.parent.mkdir(parents=True, exist_ok=True)
            reference.symlink_to(ROOT / "data" / "reference")
        t0 = time.perf_counter()
        simulate_dataset(root / "datasets" / key, n_cells, n_genes, PEAKS_PER_GENE * n_genes, seed=0)
        tqdm.write(f"simulated {key}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return key


def run_worker(stage: str, root: Path, key: str, work: Path, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", stage, "--root", str(root), "--key", key, "--work", str(work)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"status": f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}"}
    return {"status": "ok", **json.loads(proc.stdout.strip().splitlines()[-1])}


def growth_exponents(table: pd.DataFrame) -> pd.DataFrame:
    """Slope of log(seconds) against log(size) per stage and axis (least squares, >= 2 sizes)."""
    rows = []
    for (axis, stage), part in table[table.status == "ok"].groupby(["axis", "stage"], sort=False):
        size = part.n_cells if axis == "cells" else part.n_genes
        if part.seconds.gt(0).sum() >= 2:
            slope = np.polyfit(np.log(size), np.log(part.seconds), 1)[0]
            rows.append({"axis": axis, "stage": stage, "exponent": slope, "sizes": len(part)})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for col, axis in enumerate(("cells", "genes")):
        part = table[(table.axis == axis) & (table.status == "ok")]
        size = "n_cells" if axis == "cells" else "n_genes"
        for stage in STAGES:
            s = part[part.stage == stage]
            if len(s):
                axes[0, col].loglog(s[size], s.seconds, "o-", label=stage)
                axes[1, col].semilogx(s[size], s.peak_rss_gb, "o-", label=stage)
        fixed = part.n_genes.iloc[0] if axis == "cells" and len(part) else part.n_cells.iloc[0] if len(part) else ""
        axes[0, col].set_title(f"against {axis} ({'genes' if axis == 'cells' else 'cells'} = {fixed})")
        axes[0, col].set_ylabel("wall time (s)")
        axes[1, col].set_ylabel("peak RSS (GB)")
        axes[1, col].set_xlabel(size)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def grid(args) -> list[tuple[str, int, int]]:
    cells = [("cells", n, args.fixed_genes) for n in args.cells]
    genes = [("genes", args.fixed_cells, g) for g in args.genes]
    return cells + genes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--cells", type=ints, default=[1_000, 5_000, 20_000, 50_000], help="N at --fixed-genes")
    parser.add_argument("--genes", type=ints, default=[2_000, 5_000, 10_000, 20_000], help="G at --fixed-cells")
    parser.add_argument("--fixed-genes", type=int, default=2_000)
    parser.add_argument("--fixed-cells", type=int, default=2_000)
    parser.add_argument("--stages", type=lambda t: t.split(","), default=list(STAGES))
    parser.add_argument("--max-seconds", type=float, default=600, help="skip a backbone epoch predicted to take longer")
    parser.add_argument("--timeout", type=float, default=1200, help="per stage and size")
    parser.add_argument("--data", type=Path, default=Path("/tmp/multiome_scaling"), help="simulated datasets, kept")
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.csv")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = run_stage(args.worker, args.root, args.key, args.work)
        print(json.dumps({**result, "peak_rss_gb": _peak_rss_gb()}))
        return
    if args.quick:
        args.cells, args.genes, args.fixed_genes, args.fixed_cells = [300, 600], [300, 600], 300, 300
        args.out = args.out.with_name("scaling_quick.csv")

    root, work = args.data / "data", args.data / "work"
    work.mkdir(parents=True, exist_ok=True)
    rows, last_backbone, gave_up = [], {}, {}
    points = grid(args)
    for axis, n, g in tqdm(points, desc="sizes", file=sys.stderr):
        key = ensure_dataset(root, n, g)
        for stage in tqdm(args.stages, desc=key, leave=False, file=sys.stderr):
            row = {"axis": axis, "n_cells": n, "n_genes": g, "n_peaks": PEAKS_PER_GENE * g, "stage": stage}
            size = n if axis == "cells" else g
            predicted = last_backbone.get(axis, (0, 0))[1] * size / max(last_backbone.get(axis, (1, 1))[0], 1)
            if stage == "backbone_epoch" and predicted > args.max_seconds:
                rows.append({**row, "status": f"not run: predicted {predicted / 60:.0f} min"})
                continue
            if (axis, stage) in gave_up:  # a smaller size of this axis already timed out
                rows.append({**row, "status": f"not run: {gave_up[axis, stage]} smaller timed out"})
                continue
            result = run_worker(stage, root, key, work, args.timeout)
            rows.append({**row, **result})
            if result["status"].startswith("timeout"):
                gave_up[axis, stage] = size
            if stage == "backbone_epoch" and result["status"] == "ok":
                last_backbone[axis] = (size, result["seconds"])
            tqdm.write(f"{key} {stage}: {result}", file=sys.stderr)
    table = pd.DataFrame(rows)
    for column in ("seconds", "rss_before_gb", "peak_rss_gb"):
        table[column] = table.get(column, np.nan)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    exponents = growth_exponents(table)
    exponents.to_csv(args.out.with_name(args.out.stem + "_exponents.csv"), index=False)
    plot(table, args.out.with_suffix(".png"))
    print(table.to_markdown(index=False, floatfmt=".3g"))
    print()
    print(exponents.to_markdown(index=False, floatfmt=".2f"))
    print(f"\nwrote {args.out}, {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
