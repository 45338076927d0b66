"""Stage 1 (EpiAwareNet backbone) throughput, peak memory and gene-embedding export time.

Every configuration runs in a fresh subprocess so its peak RSS (``resource.getrusage``
``ru_maxrss``) is its own; on CUDA the peak is ``torch.cuda.max_memory_allocated``. A training
step is forward + backward + AdamW step on ``--batch`` cells. Rows:

- ``reference``: the reference implementation's benchmark sizes (scripts/benchmark_scaling.py of
  tianyang-x/EpiAwareNet_pub): G=5,000 genes, P=20,000 peaks, 50 random candidates per gene,
  d=256, 6 layers, 8 heads, K=8, k=16, FFN 4d, synthetic values with realistic sparsity
  (10% of genes and 4% of peaks non-zero per cell).
- ``snareseq``: the bundled SNARE-seq data (385 cells, 8,595 genes, 36,954 peaks, candidates
  within 100 kb of each TSS) with the ``cpu`` profile and its batch size.
- ``pbmc``: a 10x run at the EpiAwareNet paper's size as the ``cpu`` profile sees it: the 11,053 GRN
  genes that ``grn_genes`` keeps of 36,600 (docs/performance.md), 112,000 peaks, ~2,000 genes and
  ~7,000 peaks non-zero per cell (synthetic values), 16 random candidates per gene; 64 cells for
  the embedding export.

Wall time on a shared VM includes the hypervisor's steal time; the table also prints the
process's CPU seconds per cell and the machine's steal % over the timed steps.

Allocator (``--allocator``): glibc's malloc serves tensors below its (dynamic, up to 32 MB) mmap
threshold from heaps that it rarely gives back, so a training step's peak RSS is ~1.8x its live
peak here. ``hugepage-mmap`` runs the worker with ``GLIBC_TUNABLES`` that mmap every allocation of
1 MB or more with transparent huge pages: RSS then tracks live memory, at the cost of the kernel
zeroing fresh pages for each large tensor (~10 GB per step at reference sizes). ``jemalloc``
preloads libjemalloc (``apt install libjemalloc2``) and never purges: freed pages are reused,
neither kept in fragmented heaps nor zeroed again, so it is as fast as glibc and nearly as lean as
``hugepage-mmap`` (on SNARE-seq's ``cpu`` profile, 2x faster than glibc).

"vs reference" divides by the reference implementation's step measured in the same run, on the
same machine: ``--reference DIR`` (a checkout of tianyang-x/EpiAwareNet_pub, see
../shared/bench/README.md) runs ../shared/bench/ref_epiaware_step.py first. Without it, no ratio
is printed.

    python benchmarks/grn_throughput.py                       # both configs, auto dtype, grad ckpt on
    python benchmarks/grn_throughput.py --dtypes fp32 bf16 --checkpointing both   # the former default
    python benchmarks/grn_throughput.py --configs reference --dtypes fp32 --batch 2 4
    python benchmarks/grn_throughput.py --configs pbmc --dtypes fp32 --steps 1   # a 10x run's cost per cell
    python benchmarks/grn_throughput.py --configs reference --dtypes bf16 --batch 2 4 8 \
        --checkpointing on --allocator glibc hugepage-mmap jemalloc --steps 3 \
        --reference /tmp/EpiAwareNet_pub   # the table of docs/performance.md
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
REFERENCE_STEP = ROOT.parent / "shared" / "bench" / "ref_epiaware_step.py"
ALLOCATORS = {  # name -> environment of the worker process
    "glibc": {},
    "hugepage-mmap": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=1048576"},
    # Debian/Ubuntu: apt install libjemalloc2. Never purging keeps freed pages for reuse instead of
    # handing them back to be zeroed again (the default 10 s decay: 4.6 s/cell vs 2.75, same peak)
    "jemalloc": {"LD_PRELOAD": "libjemalloc.so.2", "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"},
}
CPU_BATCH = 32  # PROFILES["cpu"] batch size (not imported here: the driver stays torch-free)


def flops_per_cell(cfg, n_genes: int, n_cand: float, peak_tokens: float) -> dict:
    """Forward+backward FLOPs per cell (multiply-adds x 2; backward = 2x forward, kNN forward only).

    ``n_cand``: candidate slots per gene (C, pads included: the shared path scores them all);
    ``peak_tokens``: peak tokens per cell (shared zero tokens / batch + the cell's non-zero tokens).
    """
    d, L, m, k = cfg.d_model, cfg.n_layers, cfg.ffn_mult, cfg.k_neighbors
    gene = (4 * d * d + 2 * m * d * d + 2 * k * d) * n_genes  # qkv+o, FFN, kNN attention
    if cfg.use_atac:
        gene += (2 * d * d + 2 * n_cand * d) * n_genes  # cross q+o, candidate logits + weighted sum
    peak = (2 * d * d * L + 2 * m * d * d * (L - 1)) * peak_tokens if cfg.use_atac else 0
    decoder = (d * d + 2 * d) * n_genes
    knn = n_genes * n_genes * d
    fwd = 2 * (gene * L + peak + decoder)
    return {"train": 3 * fwd + 2 * knn, "forward": fwd + 2 * knn}


# ------------------------------------------------------------------------------------- worker
def _cpu_clock() -> tuple[float, float, float]:
    """(process user+sys CPU s, machine busy jiffies, machine steal jiffies). On a shared VM the
    hypervisor's steal time stretches wall time; CPU seconds and steal % make that visible."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return ru.ru_utime + ru.ru_stime, user + nice + system + irq + softirq + steal, steal


def _synthetic(G, P, C, n_cells, seed=0, gene_density=0.10, peak_density=0.04):
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    counts = sp.random(n_cells, G, density=gene_density, random_state=seed, data_rvs=lambda n: rng.poisson(2.0, n) + 1)
    rna = sp.csr_matrix(counts, dtype=np.float32).log1p()
    atac = sp.csr_matrix(sp.random(n_cells, P, density=peak_density, random_state=seed + 1), dtype=np.float32)
    atac.data[:] = 1.0
    cand = rng.integers(0, P, (G, C))  # as the reference's "random" candidate mode (repeats allowed)
    return rna, atac, cand


def _snareseq():
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    sys.path.insert(0, str(ROOT))
    from multiome_assets.annotation import match_genes, read_annotation
    from multiome_assets.intervals import candidate_matrix, candidate_sets
    from multiome_assets.readers import parse_peaks

    rna = ad.read_h5ad(ROOT / "data/datasets/snareseq_hesc/rna.h5ad")
    atac = ad.read_h5ad(ROOT / "data/datasets/snareseq_hesc/atac.h5ad")
    genes = match_genes(rna.var_names, None, read_annotation(ROOT / "data/reference/hg38_genes_ensembl93.tsv.gz"))
    cands = candidate_sets(genes, parse_peaks(atac.var_names), 100_000, 50)
    cand = candidate_matrix(cands, rna.var_names, 50)
    return sp.csr_matrix(rna.X, dtype=np.float32), sp.csr_matrix(atac.X, dtype=np.float32), cand


def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    if "jemalloc" in os.environ.get("LD_PRELOAD", "") and "jemalloc" not in Path("/proc/self/maps").read_text():
        sys.exit("--allocator jemalloc: libjemalloc.so.2 was not loaded (Debian/Ubuntu: apt install libjemalloc2)")
    sys.path.insert(0, str(ROOT))
    from multiome_assets.grn.pretrain import PROFILES, gene_embeddings
    from multiome_assets.models.grn_transformer import (
        GRNTransformer,
        GRNTransformerConfig,
    )
    from multiome_assets.preprocess import nb_targets

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    B = spec["batch"]
    if spec["config"] == "reference":
        G, P, C = 5000, 20000, 50
        rna, atac, cand = _synthetic(G, P, C, n_cells=max(8, B * (spec["steps"] + spec["warmup"])))
        cfg = GRNTransformerConfig(n_genes=G, n_peaks=P, ffn_mult=4, dropout=spec["dropout"])
    elif spec["config"] == "pbmc":
        G, P, C = 11053, 112000, 16
        rna, atac, cand = _synthetic(G, P, C, n_cells=max(64, B * (spec["steps"] + spec["warmup"])),
                                     gene_density=2000 / G, peak_density=7000 / P)
        cfg = GRNTransformerConfig(n_genes=G, n_peaks=P, **PROFILES["cpu"][0])
    else:
        rna, atac, cand = _snareseq()
        cfg = GRNTransformerConfig(n_genes=rna.shape[1], n_peaks=atac.shape[1], **PROFILES["cpu"][0])
    targets, _ = nb_targets(rna)
    torch.manual_seed(0)
    model = GRNTransformer(cfg, torch.from_numpy(cand), grad_checkpointing=spec["checkpointing"]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = torch.autocast(dev.type, dtype=torch.bfloat16) if spec["dtype"] == "bf16" else torch.autocast(dev.type, enabled=False)
    gen = torch.Generator().manual_seed(0)
    n_cells = rna.shape[0]

    def batch(i):
        rows = np.arange(i * B, (i + 1) * B) % n_cells
        x = torch.from_numpy(rna[rows].toarray()).to(dev)
        mask = (torch.rand(B, cfg.n_genes, generator=gen) < cfg.mask_fraction).to(dev)
        return x, torch.from_numpy(atac[rows].toarray()).to(dev), mask, torch.from_numpy(targets[rows].toarray()).to(dev)

    def step(i):
        x, a, mask, y = batch(i)
        with amp:
            _, loss = model(x, a, mask, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GB (ru_maxrss is KB)
    model.train()
    for i in range(spec["warmup"]):
        step(i)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    t, clock = time.perf_counter(), _cpu_clock()
    for i in range(spec["steps"]):
        loss = step(spec["warmup"] + i)
    sync()
    train_s = (time.perf_counter() - t) / (spec["steps"] * B)
    cpu, busy, steal = (b - a for a, b in zip(clock, _cpu_clock()))
    peak = (torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    n_emb = spec["embed_cells"] or n_cells
    t = time.perf_counter()
    with amp:
        gene_embeddings(model, rna[:n_emb], atac[:n_emb], {"all": np.arange(n_emb)}, batch_size=spec["embed_batch"], device=spec["device"])
    sync()
    embed_s = time.perf_counter() - t
    peak_tokens = len(model.peak_index) / B + float(atac[:, model.peak_index.cpu().numpy()].nnz) / n_cells if cfg.use_atac else 0
    fl = flops_per_cell(cfg, cfg.n_genes, model.cand.shape[1] if cfg.use_atac else 0, peak_tokens)
    return {**spec, "s_per_cell": train_s, "cells_per_s": 1 / train_s, "cpu_s_per_cell": cpu / (spec["steps"] * B),
            "steal_pct": 100 * steal / max(1, busy), "peak_gb": peak, "setup_gb": rss_setup,
            "embed_s": embed_s, "embed_cells": n_emb, "gflop_train": fl["train"] / 1e9, "gflop_fwd": fl["forward"] / 1e9,
            "loss": loss, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------- driver
TABLE_HEADER = (
    "| config | batch | dtype | grad ckpt | allocator | train s/cell | cells/s | vs ref speed | peak RSS GB | vs ref mem | "
    "GFLOP/cell (train) | achieved GFLOP/s | embed export | CPU s/cell | steal % |\n"
    + "|---" * 15 + "|"
)


def probe_precision(device: str) -> dict:
    """What ``autocast_dtype`` picks on ``device``, asked in a subprocess: torch in the driver would
    count towards every worker's peak RSS (a spawned child inherits its parent's high-water mark)."""
    code = ("import json, sys, torch; sys.path.insert(0, sys.argv[1]); "
            "from multiome_assets.models.precision import NATIVE_BF16_FEATURES, autocast_dtype; "
            "caps = torch.cpu.get_capabilities(); "
            "print(json.dumps({'auto': 'bf16' if autocast_dtype(sys.argv[2]) else 'fp32', "
            "'cpu_bf16': [n for n in NATIVE_BF16_FEATURES if caps.get(n) is True], "
            "'capability': torch.backends.cpu.get_cpu_capability()}))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), device], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def resolve_dtypes(requested: list[str], device: str) -> list[str]:
    """``auto`` -> bf16 where the hardware computes it, else fp32; warns on an emulated ``bf16``."""
    probe = probe_precision(device)
    print(f"auto dtype on {device}: {probe['auto']} (CPU kernels {probe['capability']}, "
          f"bf16 instructions: {', '.join(probe['cpu_bf16']) or 'none'})", flush=True)
    if "bf16" in requested and probe["auto"] != "bf16":
        print(f"warning: bf16 requested, but {device} has no native bf16 (on a CPU: AVX512_BF16 or AMX-BF16); "
              "it is emulated and can be 100x slower than fp32", file=sys.stderr, flush=True)
    return list(dict.fromkeys(probe["auto"] if d == "auto" else d for d in requested))


def reference_step(checkout: str, steps: int, env: dict) -> dict:
    """The reference implementation's training step, timed now on this machine (s_per_cell, peak_rss_gb)."""
    out = subprocess.run([sys.executable, str(REFERENCE_STEP), "--steps", str(steps)], env={**env, "REF": checkout},
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"the reference step failed ({REFERENCE_STEP}, REF={checkout}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_row(r: dict, ref: dict | None) -> str:
    ratios = ref is not None and r["config"] == "reference"  # the reference's sizes: the only rows to divide
    speed = f"{r['s_per_cell']:.3f} | {r['cells_per_s']:.3f} | " + (f"{ref['s_per_cell'] / r['s_per_cell']:.1f}x" if ratios else "-")
    mem = f"{r['peak_gb']:.2f} (setup {r['setup_gb']:.2f}) | " + (f"{r['peak_gb'] / ref['peak_rss_gb']:.2f}x" if ratios else "-")
    return (f"| {r['config']} | {r['batch']} | {r['dtype']} | {'on' if r['checkpointing'] else 'off'} | {r['allocator']} | "
            f"{speed} | {mem} | {r['gflop_train']:.0f} | {r['gflop_train'] / r['s_per_cell']:.0f} | "
            f"{r['embed_s']:.1f} s / {r['embed_cells']} cells ({r['embed_s'] / r['embed_cells']:.2f} s/cell) | "
            f"{r['cpu_s_per_cell']:.2f} | {r['steal_pct']:.0f} |")


def specs(args, dtypes: list[str]):
    for config in args.configs:
        for B in args.batch or [2 if config == "reference" else CPU_BATCH]:
            ckpts = {"off": [False], "on": [True], "both": [False, True]}[args.checkpointing] if config == "reference" else [False]
            for ckpt, dtype, allocator in itertools.product(ckpts, dtypes, args.allocator):
                yield dict(config=config, batch=B, dtype=dtype, checkpointing=ckpt, steps=args.steps, allocator=allocator,
                           warmup=args.warmup, device=args.device, threads=args.threads, dropout=args.dropout,
                           embed_cells={"reference": 8, "pbmc": 64}.get(config, 0),
                           embed_batch=4 if config == "reference" else 32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["reference", "snareseq"], choices=["reference", "snareseq", "pbmc"])
    p.add_argument("--dtypes", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 where the hardware computes it natively (CUDA, AVX512_BF16, AMX), else fp32")
    p.add_argument("--batch", type=int, nargs="+", default=None, help="cells per step (default: 2 reference, the cpu profile's for snareseq)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--checkpointing", choices=["off", "on", "both"], default="on", help="reference rows")
    p.add_argument("--dropout", type=float, default=0.0, help="reference rows (0.0 as the reference benchmark)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--allocator", nargs="+", default=["glibc"], choices=list(ALLOCATORS), help="see the module docstring")
    p.add_argument("--reference", metavar="DIR", help="a checkout of EpiAwareNet_pub: time its step in this run "
                   "and print the ratios against it (../shared/bench/README.md); without it, no ratio")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "GLIBC_TUNABLES")}  # `make` may preload jemalloc
    env["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")  # no spinning on a shared box
    dtypes = resolve_dtypes(args.dtypes, args.device)
    ref = reference_step(args.reference, args.steps, env) if args.reference else None
    print(f"\n{TABLE_HEADER}", flush=True)
    for spec in tqdm(list(specs(args, dtypes)), desc="configurations", file=sys.stderr):
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], env={**env, **ALLOCATORS[spec["allocator"]]},
                             capture_output=True, text=True)
        if out.returncode:
            tqdm.write(f"{spec['config']} batch {spec['batch']} {spec['dtype']} failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        tqdm.write(format_row(json.loads(out.stdout.strip().splitlines()[-1]), ref), file=sys.stdout)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}")
    if ref is None:
        print("no reference ratios: pass --reference DIR to time the reference's step in this run")
    else:
        print(f"reference implementation, this run, this machine: {ref['s_per_cell']:.2f} s/cell fwd+bwd, "
              f"{ref['peak_rss_gb']:.2f} GB peak")


if __name__ == "__main__":
    main()
