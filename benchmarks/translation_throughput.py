"""Cisformer translator throughput: cells/s of a training step (forward + backward + clip + Adam),
peak memory and achieved GFLOP/s, at the reference's full padded lengths and at the real lengths
of the bundled cells.

Rows (each in a fresh subprocess, so its peak RSS is its own; on CUDA the peak is
``torch.cuda.max_memory_allocated``):

- ``full``: the reference's default configuration, every cell padded as it pads them. ATAC→RNA:
  10,000 cCRE slots in, 3,000 genes out, d=280, 4 layers, 7 heads of dimension 140. RNA→ATAC:
  2,048 genes in, 2,048 cCREs out, d=210, 6 layers, 6 heads of dimension 128.
- ``real:<dataset>``: the same model and output sizes, with each cell's source tokens at its real
  count in the bundled dataset (accessible cCREs of the vocabulary; expressed vocabulary genes),
  capped as the reference caps them, batched by `length_buckets` and padded to the longest cell
  of the batch, as `translator_*` trains; the timed batches sit at evenly spaced quantiles of
  length, so their mean is the dataset's mean cost per cell.

FLOPs are counted from the shapes a step computes (padding included: that is the work done),
2 per multiply-add, backward = 2x forward; "of peak" divides the achieved rate by this machine's
measured fp32 (or the chosen dtype's) matmul rate. "vs reference" divides by the reference
implementation's step measured in the same run on the same machine: ``--reference DIR`` (a
checkout of qihang-zou/Cisformer; ``--reference-deps DIR``: its extra packages, see
../shared/bench/README.md) runs ../shared/bench/ref_cisformer_step.py per direction first.
Without it, no ratio is printed.

    python benchmarks/translation_throughput.py                    # every row, auto dtype
    python benchmarks/translation_throughput.py --rows real:bmmc_starter real:snareseq_hesc
    python benchmarks/translation_throughput.py --device cuda --batch-full 16
    python benchmarks/translation_throughput.py --links      # link extraction time on the bundled datasets
    python benchmarks/translation_throughput.py --links-10x  # attention links per cell at a 10x run's size

``--links`` times what the link assets compute (`links.extract`) with `cpu`-profile translators
(weights do not change the cost): attention links of the cells the link assets read (`link_cell_sets`),
gene link scores, and correlation links, per bundled dataset.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_STEP = ROOT.parent / "shared" / "bench" / "ref_cisformer_step.py"
SIZES = {  # the reference's defaults: source slots, query slots, model
    "atac2rna": (10_000, 3_000, dict(d_model=280, n_layers=4, n_heads=7, head_dim=140)),
    "rna2atac": (2_048, 2_048, dict(d_model=210, n_layers=6, n_heads=6, head_dim=128)),
}
DATASETS = ("bmmc_starter", "snareseq_hesc")


def flops(direction: str, batch: int, n_source: int, n_query: int, model: dict) -> float:
    """Forward + backward FLOPs of one step on (batch, n_source) keys and (batch, n_query) queries."""
    d, L, inner = model["d_model"], model["n_layers"], model["n_heads"] * model["head_dim"]
    cross = 2 * n_query * d * inner + 4 * n_source * d * inner + 4 * n_query * n_source * inner + 2 * n_query * inner * d
    self_attn = (8 * n_query * d * inner + 4 * n_query * n_query * inner) if direction == "atac2rna" else 0
    ffn = 4 * n_query * d * 4 * d
    head = 2 * n_query * d * (8 if direction == "atac2rna" else d + 1)
    return 3.0 * batch * (L * (cross + self_attn + ffn) + head)


def real_lengths(dataset: str):
    """Per cell of a bundled dataset (after its QC): accessible vocabulary cCREs, expressed vocabulary genes."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from multiome_assets import annotation, intervals
    from multiome_assets.dataset import load_spec, reference_path
    from multiome_assets.preprocess import preprocess
    from multiome_assets.readers import read_dataset

    spec = load_spec(dataset)
    mo, _ = preprocess(read_dataset(spec), spec.qc, spec.rna_values)
    cres = intervals.binarize_to_vocab(mo.atac.X, intervals.peak_to_vocab(
        mo.atac.var, intervals.read_ccre_bed(reference_path("ccre_hg38"))))
    genes = annotation.map_to_vocab(annotation.match_genes(mo.rna.var_names, mo.rna.var.get("gene_ids"),
                                                           annotation.read_annotation(spec.annotation)),
                                    annotation.read_gene_vocab(reference_path("gene_vocab_38244")))
    in_vocab = genes.vocab_index.notna().to_numpy()
    return np.diff(cres.indptr), np.diff(mo.rna.X[:, in_vocab].tocsr().indptr)


def matmul_gflops(dtype, device, n: int = 2048, reps: int = 5) -> float:
    import torch

    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    a @ b
    sync()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


# ------------------------------------------------------------------------------------- worker
def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from multiome_assets.models.cisformer import (
        MAX_COUNT,
        N_BINS,
        Translator,
        TranslatorConfig,
    )
    from multiome_assets.translation.tokens import length_buckets

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    direction, device = spec["direction"], torch.device(spec["device"])
    n_source, n_query, model_size = SIZES[direction]
    dtype = {"fp32": None, "bf16": torch.bfloat16}[spec["dtype"]]
    rng = np.random.default_rng(0)
    if spec["lengths"] == "full":
        batches = [np.full(spec["batch"], n_source)] * (spec["warmup"] + spec["steps"])
    else:
        lengths = np.minimum(np.asarray(spec["lengths"]), n_source)
        buckets = sorted(length_buckets(lengths, spec["batch"], rng), key=lambda b: lengths[b].mean())
        # timed batches at evenly spaced quantiles of length, so their mean cost is the dataset's
        at = ((np.arange(spec["steps"]) + 0.5) / spec["steps"] * len(buckets)).astype(int)
        batches = [lengths[buckets[len(buckets) // 2]]] * spec["warmup"] + [lengths[buckets[i]] for i in at]
    torch.manual_seed(0)
    config = TranslatorConfig(direction, dropout=0.1, **model_size)
    model = Translator(config).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n_src_vocab, n_query_vocab = ((config.n_cres, config.n_genes) if direction == "atac2rna"
                                  else (config.n_genes, config.n_cres))

    def step(cell_lengths: np.ndarray) -> tuple[float, float]:
        B, width = len(cell_lengths), int(cell_lengths.max())
        src = torch.randint(0, n_src_vocab, (B, width), device=device)
        src_mask = torch.arange(width, device=device)[None, :] < torch.as_tensor(cell_lengths, device=device)[:, None]
        query = torch.randint(0, n_query_vocab, (B, n_query), device=device)
        q_mask = torch.ones(B, n_query, dtype=torch.bool, device=device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            if direction == "atac2rna":
                logits, _ = model(src, src_mask, query, q_mask)
                target = torch.randint(0, N_BINS, (B, n_query), device=device)
                loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
            else:
                value = torch.randint(1, MAX_COUNT + 1, (B, width), device=device)
                logits, _ = model(src, src_mask, query, q_mask, value)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), torch.rand_like(logits.float()).round())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return B, flops(direction, B, width, n_query, model_size)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for lengths in batches[:spec["warmup"]]:
        step(lengths)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t = time.perf_counter()
    cells, work = 0, 0.0
    for lengths in batches[spec["warmup"]:]:
        b, f = step(lengths)
        cells, work = cells + b, work + f
    sync()
    elapsed = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    matmul_dtype = dtype or torch.float32
    return {**{k: v for k, v in spec.items() if k != "lengths"}, "dtype": str(matmul_dtype).replace("torch.", ""),
            "s_per_cell": elapsed / cells, "cells_per_s": cells / elapsed, "peak_gb": peak,
            "tflop_per_cell": work / cells / 1e12, "gflops": work / elapsed / 1e9,
            "mean_source_tokens": float(np.mean(np.concatenate(batches[spec["warmup"]:]))),
            "matmul_gflops": matmul_gflops(matmul_dtype, device), "threads": torch.get_num_threads()}


def time_attention_links_10x(n_cells: int = 8, seed: int = 0) -> float:
    """Seconds per cell of the attention links at a 10x run's size (the simulated 12,000 x 36,600 x
    112,000 build of docs/performance.md: 27,444 vocabulary genes, ~1,850 of a cell's accessible
    cCREs as keys, ~140,000 in-window pairs), on synthetic cells; cpu-profile ATAC->RNA model."""
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    import torch

    sys.path.insert(0, str(ROOT))
    from multiome_assets.links import extract
    from multiome_assets.models.cisformer import Translator
    from multiome_assets.translation.tokens import vocab_cells
    from multiome_assets.translation.train import training_config, translator_config

    rng = np.random.default_rng(seed)
    n_vocab_genes, n_vocab_cres, covered, keys = 38_244, 1_033_239, 29_549, 1_850
    genes = np.sort(rng.choice(n_vocab_genes, 27_444, replace=False)).astype(float)
    counts = sp.random(n_cells, len(genes), density=0.07, random_state=seed, format="csr") * 5
    cres = np.sort(rng.choice(n_vocab_cres, covered, replace=False))
    open_ = sp.random(n_cells, covered, density=keys / covered, random_state=seed + 1, format="csr")
    atac = sp.csr_matrix((np.ones(open_.nnz, bool), cres[open_.indices], open_.indptr), shape=(n_cells, n_vocab_cres))
    cells = vocab_cells(counts, genes, n_vocab_genes, atac)
    pairs = pd.DataFrame({"gene_pos": rng.integers(0, len(cells.genes), 140_000),
                          "cre_pos": rng.integers(0, len(cells.cres), 140_000)})
    torch.manual_seed(seed)
    config = training_config("atac2rna", "cpu", seed)
    model = Translator(translator_config("atac2rna", "cpu"))
    t = time.perf_counter()
    extract.attention_links(model, cells, pairs, {"all": np.arange(n_cells)}, gene_chunk=config.n_queries,
                            max_cres=config.max_source)
    return (time.perf_counter() - t) / n_cells


def time_links(dataset: str) -> dict:
    """Seconds for each link computation on a bundled dataset, cpu-profile models, fp32, CPU."""
    import torch

    sys.path.insert(0, str(ROOT))
    from multiome_assets import annotation
    from multiome_assets.cells import cell_labels
    from multiome_assets.dataset import load_spec, reference_path
    from multiome_assets.intervals import (
        binarize_to_vocab,
        peak_to_vocab,
        read_ccre_bed,
    )
    from multiome_assets.links import extract
    from multiome_assets.links.pipeline import link_cell_sets
    from multiome_assets.models.cisformer import Translator
    from multiome_assets.preprocess import preprocess
    from multiome_assets.readers import read_dataset
    from multiome_assets.translation.pipeline import load_cells
    from multiome_assets.translation.train import training_config, translator_config

    spec = load_spec(dataset)
    mo, _ = preprocess(read_dataset(spec), spec.qc, spec.rna_values)
    vocab = read_ccre_bed(reference_path("ccre_hg38"))
    genes = annotation.match_genes(mo.rna.var_names, mo.rna.var.get("gene_ids"), annotation.read_annotation(spec.annotation))
    vocab_map = annotation.map_to_vocab(genes, annotation.read_gene_vocab(reference_path("gene_vocab_38244")))
    cells, _ = load_cells(mo, vocab_map, binarize_to_vocab(mo.atac.X, peak_to_vocab(mo.atac.var, vocab)), spec)
    pairs = extract.window_pairs(cells, vocab_map.merge(genes[["gene", "chrom", "tss"]], on="gene"), vocab, spec.link_window)
    labels = cell_labels(mo.rna.obs, spec.cell_type_column)
    sets = link_cell_sets(labels, cells.n_cells, training_config("atac2rna", "cpu", 0))
    torch.manual_seed(0)
    out = {"dataset": dataset, "sets": len(sets), "cells": int(sum(len(r) for r in sets.values())),
           "genes": len(cells.genes), "cres": len(cells.cres), "pairs": len(pairs)}
    for direction in ("atac2rna", "rna2atac"):
        model = Translator(translator_config(direction, "cpu"))
        config = training_config(direction, "cpu", 0)
        sets = link_cell_sets(labels, cells.n_cells, config)  # the cells the link assets read
        t = time.perf_counter()
        if direction == "atac2rna":
            extract.attention_links(model, cells, pairs, sets, gene_chunk=config.n_queries, max_cres=config.max_source)
            out["attention_links_s"] = time.perf_counter() - t
        else:
            extract.gene_link_scores(model, cells, sets, cre_chunk=config.n_queries, max_genes=config.max_source)
            out["gene_link_scores_s"] = time.perf_counter() - t
    from multiome_assets.preprocess import log_normalize

    t = time.perf_counter()
    extract.correlation_links(cells, log_normalize(cells.rna[:, cells.genes].tocsr()), pairs,
                              vocab.Chromosome.to_numpy()[cells.cres])
    out["correlation_links_s"] = time.perf_counter() - t
    return out


# ------------------------------------------------------------------------------------- driver
HEADER = ("| direction | lengths | batch | dtype | source tokens (mean) | s/cell | cells/s | vs reference | peak GB "
          "| TFLOP/cell | GFLOP/s | of matmul peak |\n" + "|---" * 12 + "|")


def reference_steps(checkout: str, deps: str | None, directions, steps: int) -> dict[str, dict]:
    """The reference's training step per direction, timed now on this machine (s_per_cell, peak_rss_gb)."""
    env = {**os.environ, "REF": checkout, **({"PYTHONPATH": deps} if deps else {})}
    out = {}
    for direction in directions:
        done = subprocess.run([sys.executable, str(REFERENCE_STEP), {"atac2rna": "a2r", "rna2atac": "r2a"}[direction],
                               "--steps", str(steps)], env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the reference step failed ({REFERENCE_STEP} {direction}):\n{done.stderr[-3000:]}")
        out[direction] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def row(r: dict, ref: dict[str, dict] | None) -> str:
    ratio = f"{ref[r['direction']]['s_per_cell'] / r['s_per_cell']:.1f}x" if ref else "-"
    return (f"| {r['direction']} | {r['row']} | {r['batch']} | {r['dtype']} | {r['mean_source_tokens']:,.0f} "
            f"| {r['s_per_cell']:.3g} | {r['cells_per_s']:.3g} | {ratio} | {r['peak_gb']:.2f} "
            f"| {r['tflop_per_cell']:.3g} | {r['gflops']:.0f} | {100 * r['gflops'] / r['matmul_gflops']:.0f}% |")


def _machine(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(device))
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown CPU")
    return f"{model}, {os.cpu_count()} cores"


def resolve(dtypes: list[str], device: str) -> list[str]:
    """`auto` as what `models.precision.autocast_dtype` picks on `device`; each dtype once."""
    sys.path.insert(0, str(ROOT))
    from multiome_assets.models.precision import autocast_dtype

    auto = "bf16" if autocast_dtype(device) is not None else "fp32"
    print(f"auto dtype on {device}: {auto}")
    return list(dict.fromkeys(auto if d == "auto" else d for d in dtypes))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--directions", nargs="+", default=["atac2rna", "rna2atac"], choices=list(SIZES))
    p.add_argument("--rows", nargs="+", default=["full", *(f"real:{d}" for d in DATASETS)])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "auto"], choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 where the device computes it natively (models.precision), else fp32")
    p.add_argument("--batch-full", type=int, default=1, help="cells per step at full length")
    p.add_argument("--batch-real", type=int, default=4, help="cells per step at real lengths")
    p.add_argument("--steps", type=int, default=3, help="timed steps (at real lengths: batches at length quantiles)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="also write the rows as JSON here")
    p.add_argument("--links", action="store_true", help="time link extraction on the bundled datasets instead")
    p.add_argument("--links-10x", action="store_true", help="time the attention links per cell at a 10x run's size")
    p.add_argument("--reference", metavar="DIR", help="a checkout of Cisformer: time its step in this run and print "
                   "the ratios against it (../shared/bench/README.md); without it, no ratio")
    p.add_argument("--reference-deps", metavar="DIR", help="where the reference's extra packages were installed")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.links_10x:
        print(f"machine: {_machine('cpu')}\nattention links at a 10x run's size: {time_attention_links_10x():.2f} s per cell")
        return
    if args.links:
        print(f"machine: {_machine('cpu')}\n")
        print("| dataset | cell sets | cells | genes | cCREs | in-window pairs | attention links s | gene link scores s "
              "| correlation links s |\n" + "|---" * 9 + "|", flush=True)
        for dataset in tqdm(DATASETS, desc="datasets", file=sys.stderr):
            r = time_links(dataset)
            tqdm.write(f"| {r['dataset']} | {r['sets']} | {r['cells']} | {r['genes']:,} | {r['cres']:,} | {r['pairs']:,} "
                       f"| {r['attention_links_s']:.1f} | {r['gene_link_scores_s']:.1f} | {r['correlation_links_s']:.1f} |",
                       file=sys.stdout)
        return
    lengths = {}
    for name in args.rows:
        if name.startswith("real:") and name[5:] not in lengths:
            cres, genes = real_lengths(name[5:])
            lengths[name[5:]] = {"atac2rna": cres.tolist(), "rna2atac": genes.tolist()}
    dtypes = resolve(args.dtypes, args.device)
    print(f"machine: {_machine(args.device)}")
    ref = reference_steps(args.reference, args.reference_deps, args.directions, args.steps) if args.reference else None
    if ref is None:
        print("no reference ratios: pass --reference DIR to time the reference's step in this run\n")
    else:
        print("reference, this run, this machine (fp32, SDPA): " + ", ".join(
            f"{d} {r['s_per_cell']:.2f} s/cell, {r['peak_rss_gb']:.2f} GB" for d, r in ref.items()) + "\n")
    print(HEADER, flush=True)
    rows = []
    todo = list(itertools.product(args.directions, dtypes, args.rows))
    for direction, dtype, name in tqdm(todo, desc="rows", file=sys.stderr):
        full = name == "full"
        spec = {"direction": direction, "row": name, "device": args.device, "dtype": dtype,
                "batch": args.batch_full if full else args.batch_real, "steps": args.steps, "warmup": args.warmup,
                "threads": args.threads, "lengths": "full" if full else lengths[name[5:]][direction]}
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                             text=True, env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")})
        if out.returncode:
            tqdm.write(f"| {direction} | {name} | failed: {out.stderr.strip().splitlines()[-1]} |", file=sys.stdout)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        tqdm.write(row(rows[-1], ref), file=sys.stdout)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
