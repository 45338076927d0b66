"""Bulk prior networks (TF → target) mapped into a dataset's genes, with seeded evaluation splits."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from multiome_assets.dataset import DatasetError

SPLITS = ("random", "tf_heldout")


def read_tf_list(path: Path) -> pd.Index:
    """One TF symbol per line (CRLF tolerated)."""
    try:
        names = pd.Index(pd.Series(Path(path).read_text().splitlines()).str.strip())
    except OSError as e:
        raise DatasetError(f"{path}: cannot read TF list ({e})") from None
    return names[names != ""].unique()


def read_edge_table(path: str | Path) -> pd.DataFrame:
    """A TF → target table as it is on disk: .parquet, .tsv (tab-separated), .txt (tab or comma,
    sniffed), anything else comma-separated; optionally gzipped. Priors and GRNs from other tools
    are read here."""
    suffixes = "".join(Path(path).suffixes[-2:]).lower()
    if suffixes.endswith((".parquet", ".pq")):
        read = pd.read_parquet
    elif suffixes.endswith((".tsv", ".tsv.gz")):
        read = partial(pd.read_csv, sep="\t")
    elif suffixes.endswith((".txt", ".txt.gz")):
        read = partial(pd.read_csv, sep=None, engine="python")
    else:
        read = pd.read_csv
    try:
        return read(path)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: cannot be read as a TF → target table ({type(e).__name__}: {e})") from None


def read_prior(path: Path) -> pd.DataFrame:
    """A prior edge table with columns source, target and optionally weight (:func:`read_edge_table`)."""
    table = read_edge_table(path)
    missing = {"source", "target"} - set(table.columns)
    if missing:
        raise DatasetError(f"{path}: prior lacks columns {sorted(missing)} (found {list(table.columns)})")
    weight = pd.to_numeric(table["weight"], errors="coerce") if "weight" in table else pd.Series(1.0, index=table.index)
    bad = weight.isna()
    if bad.any():
        raise DatasetError(f"{path}: column weight must hold numbers; {int(bad.sum())} rows do not "
                           f"(e.g. {table['weight'][bad].iloc[0]!r})")
    return pd.DataFrame({"tf": table["source"].astype(str), "target": table["target"].astype(str), "weight": weight.astype(float)})


def map_prior(prior: pd.DataFrame, genes: pd.Index, tfs: pd.Index, source: Path | str = "prior") -> pd.DataFrame:
    """Edges whose TF is in the TF list and both ends are dataset genes; no self-loops, no duplicates."""
    keep = prior["tf"].isin(tfs) & prior["tf"].isin(genes) & prior["target"].isin(genes) & (prior["tf"] != prior["target"])
    edges = prior[keep].drop_duplicates(["tf", "target"]).reset_index(drop=True)
    if edges.empty:
        raise DatasetError(
            f"{source}: none of its {len(prior)} edges has a listed TF and a target among the dataset's "
            f"{len(genes)} genes (genes e.g. {list(genes[:3])}, prior TFs e.g. {list(prior['tf'].unique()[:3])})"
        )
    return edges


def split_edges(edges: pd.DataFrame, *, test_fraction: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """Add `split_random` (80/20 over edges) and `split_tf_heldout` (20% of TFs, all their edges) columns."""
    rng = np.random.default_rng(seed)
    n = len(edges)
    test_edges = rng.permutation(n)[: int(round(test_fraction * n))]
    split_random = np.full(n, "train", dtype=object)
    split_random[test_edges] = "test"

    tfs = np.sort(edges["tf"].unique())
    held = rng.permutation(len(tfs))[: max(1, int(round(test_fraction * len(tfs))))]
    split_tf = np.where(edges["tf"].isin(tfs[held]), "test", "train").astype(object)
    return edges.assign(split_random=split_random, split_tf_heldout=split_tf, split_seed=seed)


def resplit(edges: pd.DataFrame, *, seed: int, test_fraction: float = 0.2) -> pd.DataFrame:
    """`edges` with both splits drawn again with `seed` (sweeps over splits)."""
    return split_edges(edges.drop(columns=[f"split_{s}" for s in SPLITS]), test_fraction=test_fraction, seed=seed)


def load_prior_edges(path: Path, genes: pd.Index, tfs: pd.Index, *, test_fraction: float = 0.2,
                     seed: int = 0) -> pd.DataFrame:
    """A prior table read, mapped into the dataset's genes and TF list and split, named by its file."""
    edges = map_prior(read_prior(path), genes, tfs, path)
    return split_edges(edges, test_fraction=test_fraction, seed=seed).assign(prior=Path(path).name)


def split_frames(prior_edges: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) edges of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    col = f"split_{split}"
    return prior_edges[prior_edges[col] == "train"], prior_edges[prior_edges[col] == "test"]


VERSION_COLUMNS = ["prior", "content_hash", "first_seen", "edges", "tfs", "edges_added", "edges_removed"]


def append_version(history: pd.DataFrame, edges: pd.DataFrame, prior: str, content_hash: str,
                   previous_edges: pd.DataFrame | None, seen: str) -> pd.DataFrame:
    """The `prior_versions` history (oldest first) with this version of the dataset's prior edges
    appended, counted against the previous version's edges; unchanged when it is the latest already."""
    if len(history) and history.content_hash.iloc[-1] == content_hash:
        return history
    now = set(zip(edges.tf, edges.target))
    before = set(zip(previous_edges.tf, previous_edges.target)) if previous_edges is not None else set()
    row = pd.DataFrame([{"prior": prior, "content_hash": content_hash, "first_seen": seen, "edges": len(now),
                         "tfs": int(edges.tf.nunique()), "edges_added": len(now - before) if previous_edges is not None else None,
                         "edges_removed": len(before - now) if previous_edges is not None else None}])
    return pd.concat([history[VERSION_COLUMNS], row], ignore_index=True).astype({"edges_added": "Int64", "edges_removed": "Int64"})


def check_update(path: Path, users: dict[str, tuple[pd.Index, pd.Index]]) -> dict[str, int]:
    """Refuse a new prior file unless it reads as a prior and keeps, for each dataset that uses it
    (key -> (genes, TF list)), at least one edge from a listed TF to one of its genes. Returns the
    edges each dataset would keep."""
    prior = read_prior(path)
    return {key: len(map_prior(prior, genes, tfs, f"{path} for dataset {key}")) for key, (genes, tfs) in users.items()}


HISTORY_METRICS = ["method", "kind", "split", "seed", "auroc", "auprc", "auprc_ratio", "per_target_auroc_macro",
                   "degree_matched_auroc"]


def metrics_at_version(history: pd.DataFrame, metrics: pd.DataFrame, content_hash: str) -> pd.DataFrame:
    """The `grn_metrics_history` table: the headline metrics evaluated on each prior version (its
    content hash), this version's rows replaced by `metrics`, the others kept."""
    current = metrics[[c for c in HISTORY_METRICS if c in metrics]].assign(content_hash=content_hash)
    kept = history[history.content_hash != content_hash] if len(history) else history
    return pd.concat([kept, current], ignore_index=True)[["content_hash", *current.columns.drop("content_hash")]]
