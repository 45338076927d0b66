"""The GRN workflow as plain functions over the foundation assets; `defs/grn.py` calls these.

Variants of the Stage 1 backbone (the ablations):
    full                 gene and peak tokens, candidate peaks within the dataset's window
    rna_only             no ATAC: no peak tokens, no gene→peak cross-attention
    random_candidates    peak tokens, but each gene's candidates drawn at random
and, without pretraining, `svd`: the same head on the backbone's starting gene identities (SVD loadings
of the standardized expression).

Degree information (the model may use it; then the table shows what the multiome adds on top):
    full+degree          the backbone's embeddings plus each gene's training degrees
                         (``EdgeHeadConfig.degree_features``, leave-one-out for training positives)
    rna_only+degree      the same without ATAC
    degree               the same head on the degrees alone (no expression, no ATAC)
On the TF-held-out split these heads read the in-degree only: every evaluated regulator has no
training edge, so its out-degree is 0 by construction. A head that also reads out-degree learns
"out-degree 0 = unlabeled" from the many TFs without prior edges and ranks held-out TFs' edges
below chance (SNARE-seq, degrees alone, BCE: AUROC 0.22 with out-degree; see README).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.dataset import DatasetError
from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.intervals import candidate_matrix
from multiome_assets.priors import split_frames
from multiome_assets.readers import Multiome

VARIANTS = ("full", "rna_only", "random_candidates")
DEGREE_INPUTS = ("full+degree", "rna_only+degree", "degree")  # heads that also read each gene's training degrees
HEAD_INPUTS = (*VARIANTS, "svd", *DEGREE_INPUTS)
OBJECTIVES = ("bce", "nnpu")
MIN_CELLS_PER_CONTEXT = 10


def pretrain(mo: Multiome, candidates: pd.DataFrame | None, *, profile: str, device: str, seed: int,
             **train_overrides) -> dict:
    """Train one Stage 1 backbone; `candidates=None` gives the RNA-only ablation.
    `train_overrides` replace fields of the profile's PretrainConfig (sweeps)."""
    from dataclasses import replace

    from multiome_assets.grn.pretrain import PROFILES, pretrain_backbone
    from multiome_assets.models.grn_transformer import GRNTransformerConfig

    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r} is not one of {sorted(PROFILES)}")
    model_overrides, train_config = PROFILES[profile]
    model_config = GRNTransformerConfig(n_genes=mo.rna.n_vars, n_peaks=mo.atac.n_vars,
                                        **{**model_overrides, "use_atac": candidates is not None})
    train_config = replace(train_config, seed=seed, **train_overrides)
    cand = candidate_matrix(candidates if candidates is not None else _no_candidates(),
                            mo.rna.var_names, model_config.max_candidates)
    checkpoint, history = pretrain_backbone(
        mo.rna.X, mo.atac.X, cand, counts=mo.rna.layers.get("counts"), model_config=model_config,
        train_config=train_config, device=device,
        gene_names=list(mo.rna.var_names), peak_names=list(mo.atac.var_names),
    )
    checkpoint["history"] = history
    checkpoint["profile"] = profile
    return checkpoint


def cell_sets(mo: Multiome, cell_type_column: str | None, source: str = "cell_type_column") -> dict[str, np.ndarray]:
    """'all' cells, plus one set per cell type with at least MIN_CELLS_PER_CONTEXT cells (cells
    without a label are in 'all' only)."""
    sets = {"all": np.arange(mo.n_cells)}
    if cell_type_column and cell_type_column not in mo.rna.obs:  # the setting changed after the cells were read
        raise DatasetError(f"{source}: cell_type_column {cell_type_column!r} is not a column of the cells "
                           f"(columns: {list(mo.rna.obs.columns)})")
    if cell_type_column:
        column = mo.rna.obs[cell_type_column]
        labelled, labels = column.notna().to_numpy(), column.astype(str).to_numpy()
        names, counts = np.unique(labels[labelled], return_counts=True)
        for name in names[counts >= MIN_CELLS_PER_CONTEXT]:
            sets[str(name)] = np.flatnonzero(labelled & (labels == name))
    return sets


def embed(checkpoint: dict, mo: Multiome, sets: dict[str, np.ndarray], device: str) -> dict[str, np.ndarray]:
    """(G, d) gene embeddings per cell set from a frozen backbone trained on `mo`'s genes and peaks."""
    from multiome_assets.grn.pretrain import gene_embeddings, load_backbone

    for what, trained_on, now in (("genes", checkpoint.get("gene_names"), mo.rna.var_names),
                                  ("peaks", checkpoint.get("peak_names"), mo.atac.var_names)):
        if trained_on is not None and not pd.Index(trained_on).equals(now):
            raise ValueError(f"the backbone was trained on other {what} (or another order) than the multiome "
                             f"({len(trained_on)} vs {len(now)}); rematerialize the backbone assets")
    model = load_backbone(checkpoint, device=device)
    return gene_embeddings(model, mo.rna.X, mo.atac.X, sets, device=device)


def svd_embeddings(mo: Multiome, sets: dict[str, np.ndarray], d: int, seed: int,
                   solver: str = "randomized") -> dict[str, np.ndarray]:
    """No-backbone input: the backbone's starting gene identity embeddings (expression SVD
    loadings, :func:`~multiome_assets.grn.pretrain.svd_identity_init`) on each cell set's cells, so
    the `svd` head shows what pretraining adds to where it starts. Pass the backbone's `d`, training
    seed and `svd_solver`: the randomized SVD's trailing components differ with another seed."""
    from multiome_assets.grn.pretrain import svd_identity_init

    return {name: svd_identity_init(mo.rna.X[idx], d, seed, solver) for name, idx in sets.items()}


def regulator_universe(genes: pd.Index, tfs: pd.Index) -> np.ndarray:
    """Every TF of the TF list that is a dataset gene: the rows of exported GRNs."""
    return np.asarray(genes[genes.isin(tfs)], dtype=object)


def edge_space(prior_edges: pd.DataFrame, genes: pd.Index, split: str) -> EdgeSpace:
    """The evaluation space of one split.

    random:     regulators = every prior TF; train/test = the 80/20 edge split.
    tf_heldout: regulators = the held-out TFs only (unseen regulators); their edges are all test,
                and `train` is empty on their rows.
    """
    train, test = split_frames(prior_edges, split)
    regulators = np.sort((test if split == "tf_heldout" else prior_edges).tf.unique())
    return EdgeSpace.from_edges(regulators, genes, train, test)


def train_pairs(prior_edges: pd.DataFrame, split: str, genes: pd.Index, regulators: np.ndarray) -> sp.csr_matrix:
    """(R, G) training positives over `regulators` (the head learns from every training edge)."""
    train = prior_edges if split == "all" else split_frames(prior_edges, split)[0]
    return EdgeSpace.from_edges(regulators, genes, train, train.iloc[:0]).train


def top_targets(scores: np.ndarray, regulators: np.ndarray, genes: np.ndarray, top: int | None) -> pd.DataFrame:
    """Long table (tf, target, score, rank) of each regulator's `top` best targets (all if None)."""
    R, G = scores.shape
    scores = scores.copy()
    scores[np.arange(R), pd.Index(genes).get_indexer(regulators)] = -np.inf  # no self-loops
    k = G - 1 if top is None else min(top, G - 1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # k < G: the self-loop is always left out
    order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable"), 1)
    rows = np.repeat(np.arange(R), k)
    cols = order.ravel()
    return pd.DataFrame({
        "tf": regulators[rows], "target": genes[cols],
        "score": scores[rows, cols].astype(np.float32), "rank": np.tile(np.arange(1, k + 1), R),
    })


def _no_candidates() -> pd.DataFrame:
    return pd.DataFrame({"gene": pd.Series([], dtype=str), "peak_index": pd.Series([], dtype=np.int64),
                         "rank": pd.Series([], dtype=np.int64)})


def head_key(head_input: str, objective: str, split: str) -> str:
    return f"{head_input}/{objective}/{split}"


def method_name(head_input: str, objective: str) -> str:
    """epiawarenet_bce, epiawarenet_nnpu_rna_only, epiawarenet_bce_degree,
    epiawarenet_bce_rna_only_degree, ..., and the heads without a backbone mlp_svd_bce, mlp_degree_bce."""
    if head_input in ("svd", "degree"):
        return f"mlp_{head_input}_{objective}"
    embedding, _, degree = head_input.partition("+")
    return f"epiawarenet_{objective}" + ("" if embedding == "full" else f"_{embedding}") + ("_degree" if degree else "")


def head_degrees(head_input: str, split: str) -> tuple[str, ...]:
    """Training degrees a head reads (see the module docstring for the TF-held-out split)."""
    if head_input not in DEGREE_INPUTS:
        return ()
    return ("in",) if split == "tf_heldout" else ("out", "in")


def head_embedding(grn_embeddings: dict, head_input: str, context: str = "all") -> np.ndarray:
    """The per-gene embedding a head of `head_input` reads; degree heads add the degrees themselves."""
    if head_input == "degree":
        return np.zeros((len(grn_embeddings["gene_names"]), 0), dtype=np.float32)
    return grn_embeddings["embeddings"][head_input.partition("+")[0]][context]


def train_heads(grn_embeddings: dict, prior_edges: pd.DataFrame, genes: pd.Index, regulators: np.ndarray, *,
                epochs: int, seed: int, device: str, min_steps: int | None = None, prior_pi: float | None = None,
                inputs: tuple[str, ...] = HEAD_INPUTS, objectives: tuple[str, ...] = OBJECTIVES,
                splits: tuple[str, ...] = ("random", "tf_heldout", "all")) -> dict:
    """One Stage 2 head per (embedding, objective, split) on the 'all' cell set.

    Rows are every TF of the TF list (`regulators`); positives are the split's training edges;
    held-out edges are never seen (they are unlabeled like every other pair). `min_steps`, `prior_pi`
    (nnPU's class prior): None for EdgeHeadConfig's defaults.
    """
    from dataclasses import asdict

    from multiome_assets.grn.head import EdgeHeadConfig, edge_head_checkpoint, train_edge_head

    reg_index = pd.Index(genes).get_indexer(regulators)
    heads, histories = {}, []
    for split in splits:
        positives = train_pairs(prior_edges, split, genes, regulators)
        for head_input in inputs:
            z = head_embedding(grn_embeddings, head_input)
            for objective in objectives:
                defaults = {k: v for k, v in (("min_steps", min_steps), ("prior_pi", prior_pi)) if v is not None}
                config = EdgeHeadConfig(objective=objective, epochs=epochs, seed=seed,
                                        degree_features=head_degrees(head_input, split), **defaults)
                head, history = train_edge_head(z, reg_index, positives, config, device=device)
                heads[head_key(head_input, objective, split)] = edge_head_checkpoint(head)
                histories.append(history.assign(head=head_key(head_input, objective, split)))
    return {"regulators": regulators, "heads": heads, "history": pd.concat(histories, ignore_index=True),
            "config": asdict(config)}


def _score(grn_head: dict, key: str, z: np.ndarray, regulators: np.ndarray, genes: pd.Index, device: str) -> np.ndarray:
    from multiome_assets.grn.head import load_edge_head, score_all_pairs

    head = load_edge_head(grn_head["heads"][key], device=device)
    return score_all_pairs(head, z, pd.Index(genes).get_indexer(regulators), device=device)


def export_scores(grn_embeddings: dict, grn_head: dict, regulators: np.ndarray, top: int | None, device: str) -> pd.DataFrame:
    """Edge scores of the heads trained on every prior edge, for every cell set."""
    genes = np.asarray(grn_embeddings["gene_names"], dtype=object)
    tables = []
    for objective in OBJECTIVES:
        for context, z in grn_embeddings["embeddings"]["full"].items():
            scores = _score(grn_head, head_key("full", objective, "all"), z, regulators, pd.Index(genes), device)
            tables.append(top_targets(scores, regulators, genes, top).assign(
                context=context, method=method_name("full", objective)))
    out = pd.concat(tables, ignore_index=True)
    return out[["context", "method", "tf", "target", "score", "rank"]]


def method_scores(space: EdgeSpace, split: str, grn_embeddings: dict, grn_head: dict, grn_baselines: dict,
                  external_grns: list[dict], device: str, inputs: tuple[str, ...] = HEAD_INPUTS,
                  objectives: tuple[str, ...] = OBJECTIVES) -> dict[str, np.ndarray]:
    """(R, G) scores over `space` for every method evaluated on `split`. `external_grns`: one dict per
    table, {path, name (optional), source_col, target_col, score_col (optional)}."""
    from multiome_assets.grn.baselines import degree_baselines, import_external_grn

    genes = pd.Index(space.genes)
    for asset, names in (("grn_embeddings", grn_embeddings["gene_names"]), ("grn_baselines", grn_baselines["genes"])):
        if not genes.equals(pd.Index(names)):
            raise ValueError(f"{asset} has other genes (or another gene order) than the multiome; rematerialize {asset}")
    out = {}
    for head_input in inputs:
        z = head_embedding(grn_embeddings, head_input)
        for objective in objectives:
            out[method_name(head_input, objective)] = _score(
                grn_head, head_key(head_input, objective, split), z, space.regulators, genes, device)
    rows = pd.Index(grn_baselines["regulators"]).get_indexer(space.regulators)
    if (rows < 0).any():
        raise ValueError("baseline scores lack some evaluated regulators; rematerialize grn_baselines")
    out.update({name: s[rows] for name, s in grn_baselines["scores"].items()})
    out.update(degree_baselines(space))
    for grn in external_grns:
        name = external_name(grn)
        if name in out:
            raise ValueError(f"two external GRNs are named {name!r}; give each external_grns entry its own name")
        out[name] = import_external_grn(grn["path"], space, **{k: grn[k] for k in EXTERNAL_COLUMNS if grn.get(k)})
    return out


EXTERNAL_COLUMNS = ("source_col", "target_col", "score_col")


def external_name(grn: dict) -> str:
    """external_<name>, or external_<file name without suffixes> when the entry has no name."""
    from pathlib import Path

    return f"external_{grn.get('name') or Path(grn['path']).name.split('.')[0]}"


def method_kind(name: str) -> str:
    if name.startswith("degree_"):
        return "degree_baseline"
    if name.startswith("external_"):
        return "external"
    if name in ("epiawarenet_bce", "epiawarenet_nnpu"):
        return "transformer"
    if name.startswith(("epiawarenet_", "mlp_")):
        return "ablation"
    return "baseline"


def evaluate_methods(methods: dict[str, np.ndarray], space: EdgeSpace, *, n_random: int, top_n: int,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One metrics row per method, and the per-regulator enrichment table of every method."""
    from multiome_assets.grn.metrics import evaluate, null_networks, regulator_enrichment

    networks = null_networks(space, n_random=n_random, seed=seed)  # the same for every method
    rows, tables = [], []
    for name, scores in methods.items():
        rows.append({"method": name, "kind": method_kind(name),
                     **evaluate(scores, space, n_random=n_random, top_n=top_n, seed=seed, networks=networks)})
        tables.append(regulator_enrichment(scores, space, top_n=top_n, seed=seed).assign(method=name))
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True)


def headline_methods(methods: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The methods drawn in the PR/ROC/P@K figure."""
    keep = ("epiawarenet_bce", "epiawarenet_nnpu", "grnboost2", "pearson", "degree_target_in", "degree_product")
    return {k: methods[k] for k in keep if k in methods}
