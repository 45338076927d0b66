"""Resident memory after each edge head trained in one process at a 10x run's size (1,627 TFs x
11,053 genes, d = 32, 15,000 positives, synthetic embeddings), with or without asking the allocator
to hand back what it holds freed after each head (`build.release_freed_memory`, what the build does
when a step ends). Run it under jemalloc never purging, as `make demo` does:

    LD_PRELOAD=/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1 \
        python benchmarks/heads_resident.py --heads 6
    ... python benchmarks/heads_resident.py --heads 6 --release
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from multiome_assets.build import release_freed_memory
from multiome_assets.grn.head import train_edge_head
from multiome_assets.models.edge_head import EdgeHeadConfig

GENES, TFS, D, POSITIVES = 11_053, 1_627, 32, 15_000


def resident_gb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--release", action="store_true", help="release freed memory after each head")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    z = rng.normal(size=(GENES, D)).astype(np.float32)
    regulators = rng.choice(GENES, TFS, replace=False)
    positives = sp.csr_matrix((np.ones(POSITIVES, bool), (rng.integers(0, TFS, POSITIVES), rng.integers(0, GENES, POSITIVES))),
                              shape=(TFS, GENES))
    print("| head | objective | s | resident GB |\n|---|---|--:|--:|")
    for i in range(args.heads):
        objective = ("bce", "nnpu")[i % 2]
        t = time.perf_counter()
        train_edge_head(z, regulators, positives, EdgeHeadConfig(objective=objective, seed=i))
        if args.release:
            release_freed_memory()
        print(f"| {i} | {objective} | {time.perf_counter() - t:.1f} | {resident_gb():.2f} |", flush=True)


if __name__ == "__main__":
    main()
