"""GRN metrics across candidate windows: how far from each TSS should a gene look for peaks?

For each window the whole asset graph of one dataset partition is materialized in-process into
its own scratch warehouse (``--out``/<window>), with ``candidate_sets.window`` set; everything
else is the `make demo` setting. The table lists the transformer (BCE, nnPU, with degree
features), the random-candidate ablation and the bars (GRNBoost2 when selected, Pearson, the
degree baselines) on both splits, plus the mean number of candidates per gene with any.

    python benchmarks/grn_windows.py --dataset bmmc_starter --windows 5000 50000 100000
    python benchmarks/grn_windows.py --dataset snareseq_hesc --windows 5000 100000 --baselines pearson

Each window of BMMC takes a few minutes on 2 cores; SNARE-seq trains three backbones per window.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("epiawarenet_bce", "epiawarenet_nnpu", "epiawarenet_bce_degree", "epiawarenet_bce_random_candidates",
           "epiawarenet_bce_rna_only", "grnboost2", "pearson", "degree_target_in", "degree_tf_out")


def run_window(dataset: str, window: int, baselines: list[str]) -> list[dict]:
    import dagster as dg

    sys.path.insert(0, str(ROOT))
    from multiome_assets import warehouse
    from multiome_assets.definitions import ASSETS, RESOURCES

    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("dataset", [dataset])
    ops = {"candidate_sets": {"config": {"window": window}}, "grn_baselines": {"config": {"methods": baselines}}}
    result = dg.materialize(ASSETS, partition_key=dataset, instance=instance, resources=RESOURCES,
                            run_config={"ops": ops})
    assert result.success
    cands = warehouse.read_table("candidate_sets", dataset)
    per_gene = float(cands.groupby("gene").size().mean()) if len(cands) else 0.0
    metrics = warehouse.read_table("grn_metrics", dataset)
    metrics = metrics[metrics.method.isin(METHODS)]
    keep = ["split", "method", "auroc", "auprc_ratio", "per_target_auroc_macro", "degree_matched_auroc"]
    return [{"window": window, "candidates_per_gene": per_gene, **row}
            for row in metrics[keep].to_dict("records")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="bmmc_starter")
    p.add_argument("--windows", type=int, nargs="+", default=[5_000, 50_000, 100_000])
    p.add_argument("--baselines", nargs="+", default=["pearson", "grnboost2"])
    p.add_argument("--out", default=str(ROOT / "data" / "warehouse_windows"), help="scratch warehouses, one per window")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(run_window(spec["dataset"], spec["window"], spec["baselines"])))
        return
    rows = []
    for window in args.windows:
        env = {**os.environ, "MULTIOME_WAREHOUSE": str(Path(args.out) / f"{args.dataset}_{window}"),
               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        spec = json.dumps({"dataset": args.dataset, "window": window, "baselines": args.baselines})
        out = subprocess.run([sys.executable, __file__, "--worker", spec], env=env, capture_output=True, text=True)
        if out.returncode:
            print(out.stderr[-3000:], file=sys.stderr)
            sys.exit(f"window {window} failed")
        rows += json.loads(out.stdout.strip().splitlines()[-1])
        print(f"done window {window}", file=sys.stderr)
    print(f"\n{args.dataset}: GRN metrics by candidate window (held-out prior edges)\n")
    print("| split | method | " + " | ".join(f"AUROC / AUPRC ratio / per-target @ {w // 1000} kb" for w in args.windows) + " |")
    print("|---|---|" + "---|" * len(args.windows))
    per_gene = {r["window"]: r["candidates_per_gene"] for r in rows}
    table = {(r["split"], r["method"], r["window"]): r for r in rows}
    for split in ("random", "tf_heldout"):
        for method in METHODS:
            cells = [table.get((split, method, w)) for w in args.windows]
            if not any(cells):
                continue
            print(f"| {split} | {method} | " + " | ".join(
                "-" if c is None else f"{c['auroc']:.3f} / {c['auprc_ratio']:.2f} / {c['per_target_auroc_macro']:.3f}"
                for c in cells) + " |")
    print("\ncandidates per gene with any: " + ", ".join(f"{w // 1000} kb: {per_gene[w]:.2f}" for w in args.windows))


if __name__ == "__main__":
    main()
