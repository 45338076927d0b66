"""The GRN's gene axis: which of a dataset's genes the backbone, the heads, the baselines and the
evaluation work on.

The backbone's cost per cell grows with the genes it holds as tokens (and its kNN attention with
their square), the heads', baselines' and evaluation's with TFs × genes. A 10x Multiome run has
~36,600 genes, most of them neither a TF, nor a prior target, nor variable. The budget keeps:

1. every gene of the TF list (the regulators: a TF is never dropped, whatever its variance),
2. every gene of a prior edge (its TFs and targets: every prior edge stays evaluable),
3. then the most variable genes (variance of the log-normalized expression, all cells) until
   `max_genes` are kept.

When 1 and 2 alone exceed `max_genes`, all of them are kept: the budget never drops a TF or a
prior edge. Kept genes stay in the dataset's order.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.models.profiles import Profile, check_profile
from multiome_assets.readers import Multiome

# the GRN's gene budget per profile; None: every gene of the dataset
MAX_GENES: dict[Profile, int | None] = {"cpu": 10_000, "paper": None}

GENE_COLUMNS = ["gene", "kept_as", "variance", "variance_rank"]


def gene_variance(X: sp.spmatrix) -> np.ndarray:
    """(genes,) population variance of each column of a sparse cells × genes matrix."""
    X = sp.csr_matrix(X)
    mean = np.asarray(X.mean(0), dtype=np.float64).ravel()
    sq = np.asarray(X.multiply(X).mean(0), dtype=np.float64).ravel()
    return np.maximum(sq - mean**2, 0.0)


def select_genes(mo: Multiome, tfs: pd.Index, prior_edges: pd.DataFrame, max_genes: int | None) -> pd.DataFrame:
    """One row per dataset gene: `kept_as` is 'tf', 'prior', 'variable' or 'dropped' (the reasons
    in the order above), with its variance and variance rank (1 = most variable)."""
    genes = pd.Index(mo.rna.var_names)
    variance = gene_variance(mo.rna.X)
    order = np.argsort(-variance, kind="stable")
    rank = np.empty(len(genes), dtype=np.int64)
    rank[order] = np.arange(1, len(genes) + 1)
    kept_as = np.full(len(genes), "dropped", dtype=object)
    kept_as[genes.isin(prior_edges["tf"]) | genes.isin(prior_edges["target"])] = "prior"
    kept_as[genes.isin(tfs)] = "tf"
    free = len(genes) if max_genes is None else max(0, max_genes - int((kept_as != "dropped").sum()))
    kept_as[order[kept_as[order] == "dropped"][:free]] = "variable"  # the most variable of the rest
    return pd.DataFrame({"gene": np.asarray(genes, dtype=object), "kept_as": kept_as,
                         "variance": variance.astype(np.float32), "variance_rank": rank})


def budget(profile: Profile) -> int | None:
    check_profile(profile, MAX_GENES)
    return MAX_GENES[profile]


def restrict(mo: Multiome, grn_genes: pd.DataFrame) -> Multiome:
    """`mo` with only the genes `grn_genes` keeps (all cells, every peak), in the dataset's order."""
    keep = pd.Index(grn_genes.loc[grn_genes.kept_as != "dropped", "gene"])
    mask = pd.Index(mo.rna.var_names).isin(keep)
    if int(mask.sum()) != len(keep):
        raise ValueError("grn_genes names genes the multiome lacks; rematerialize grn_genes")
    if mask.all():
        return mo
    return Multiome(rna=mo.rna[:, mask].copy(), atac=mo.atac)
