"""The GRN workflow as plain functions over the foundation assets; each asset of `defs/grn.py` is
one call here.

Variants of the Stage 1 backbone (the ablations):
    full                 gene and peak tokens, candidate peaks within the dataset's window
    rna_only             no ATAC: no peak tokens, no gene→peak cross-attention
    random_candidates    peak tokens, but each gene's candidates drawn at random
and, without pretraining, `svd`: the same head on the backbone's starting gene identities (SVD
loadings of the standardized expression). Heads may also read each gene's training degrees
(:class:`~multiome_assets.grn.artifacts.HeadInput`): then the table shows what the multiome adds
on top of popularity.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.files import remove
from multiome_assets.grn import pretrain as stage1
from multiome_assets.grn.artifacts import (
    HEAD_INPUTS,
    OBJECTIVES,
    Backbone,
    BaselineScores,
    EdgeHeads,
    GeneEmbeddings,
    HeadInput,
    HeadKey,
)
from multiome_assets.grn.baselines import degree_baselines, import_external_grn
from multiome_assets.grn.edge_space import EdgeSpace
from multiome_assets.grn.enrichment import regulator_enrichment
from multiome_assets.grn.head import (
    edge_head_checkpoint,
    load_edge_head,
    score_all_pairs,
    score_blocks,
    train_edge_head,
)
from multiome_assets.grn.metrics import curves_png, evaluate
from multiome_assets.grn.nulls import null_networks
from multiome_assets.intervals import candidate_matrix
from multiome_assets.models.checkpoint import CheckpointMismatch
from multiome_assets.models.distributed import launch
from multiome_assets.models.edge_head import EdgeHeadConfig
from multiome_assets.models.grn_transformer import GRNTransformerConfig
from multiome_assets.models.profiles import check_profile
from multiome_assets.models.progress import ChunkLog
from multiome_assets.priors import SPLITS, split_frames
from multiome_assets.readers import Multiome

HEADLINE_METHODS = ("epiawarenet_bce", "epiawarenet_nnpu", "grnboost2", "pearson", "degree_target_in", "degree_product")


# ---------------------------------------------------------------------------------------
# Stage 1: backbones and embeddings
# ---------------------------------------------------------------------------------------
def pretrain(mo: Multiome, candidates: pd.DataFrame | None, *, profile: str, device: str, seed: int,
             log=None, checkpoint: Path | None = None, processes: int = 1, **train_overrides) -> Backbone:
    """Train one Stage 1 backbone; `candidates=None` gives the RNA-only ablation.
    `train_overrides` replace fields of the profile's PretrainConfig (sweeps); `log(line)` hears progress.
    `checkpoint`: the file an interrupted training resumes from; removed once the training ends, so
    a later materialization trains afresh. `processes` > 1: trained by that many processes under
    torchrun (DDP; one per GPU on `cuda`, gloo on CPUs), each on its shard of every batch."""
    from dataclasses import replace


    check_profile(profile, stage1.PROFILES)
    model_overrides, train_config = stage1.PROFILES[profile]
    model_config = GRNTransformerConfig(n_genes=mo.rna.n_vars, n_peaks=mo.atac.n_vars,
                                        **{**model_overrides, "use_atac": candidates is not None})
    train_config = replace(train_config, seed=seed, **train_overrides)
    cand = candidate_matrix(candidates if candidates is not None else _no_candidates(),
                            mo.rna.var_names, model_config.max_candidates)
    inputs = dict(rna=mo.rna.X, atac=mo.atac.X, candidates=cand, counts=mo.rna.layers.get("counts"),
                  model_config=model_config, train_config=train_config, checkpoint=checkpoint,
                  gene_names=list(mo.rna.var_names), peak_names=list(mo.atac.var_names))
    if processes > 1:
        backbone, _ = launch(processes, "multiome_assets.grn.pretrain:pretrain_backbone", inputs, device=device, log=log)
    else:
        backbone, _ = stage1.pretrain_backbone(**inputs, device=device, log=log)
    if checkpoint is not None:
        remove(checkpoint)
    return replace(backbone, profile=profile)


def _no_candidates() -> pd.DataFrame:
    return pd.DataFrame({"gene": pd.Series([], dtype=str), "peak_index": pd.Series([], dtype=np.int64),
                         "rank": pd.Series([], dtype=np.int64)})


def embed(backbone: Backbone, mo: Multiome, sets: dict[str, np.ndarray], device: str, log=None) -> dict[str, np.ndarray]:
    """(G, d) gene embeddings per cell set from a frozen backbone trained on `mo`'s genes and peaks;
    `log(line)` hears of the progress."""
    try:
        model = stage1.load_backbone(backbone, device=device, genes=mo.rna.var_names, peaks=mo.atac.var_names)
    except CheckpointMismatch as e:
        raise CheckpointMismatch(f"{e}; rematerialize the backbone assets") from None
    return stage1.gene_embeddings(model, mo.rna.X, mo.atac.X, sets, device=device, log=log)


def svd_embeddings(mo: Multiome, sets: dict[str, np.ndarray], d: int, seed: int,
                   solver: str = "randomized") -> dict[str, np.ndarray]:
    """No-backbone input: the backbone's starting gene identity embeddings (expression SVD
    loadings, :func:`~multiome_assets.grn.pretrain.svd_identity_init`) on each cell set's cells, so
    the `svd` head shows what pretraining adds to where it starts. Pass the backbone's `d`, training
    seed and `svd_solver`: the randomized SVD's trailing components differ with another seed."""
    return {name: stage1.svd_identity_init(mo.rna.X[idx], d, seed, solver) for name, idx in sets.items()}


def gene_embeddings(mo: Multiome, sets: dict[str, np.ndarray], backbones: dict[str, Backbone],
                    device: str, log=None) -> GeneEmbeddings:
    """Every backbone's embeddings per cell set, and the full backbone's SVD start (the `svd` input)."""
    full = backbones["full"]
    embeddings = {name: embed(b, mo, sets, device, log=log and (lambda line, n=name: log(f"{n} backbone {line}")))
                  for name, b in backbones.items()}
    embeddings["svd"] = svd_embeddings(mo, sets, full.d_model, seed=full.train_config["seed"],
                                       solver=full.train_config.get("svd_solver", "randomized"))
    return GeneEmbeddings(list(mo.rna.var_names), sets, embeddings, full.profile)


# ---------------------------------------------------------------------------------------
# Edge spaces
# ---------------------------------------------------------------------------------------
def regulator_universe(genes: pd.Index, tfs: pd.Index) -> np.ndarray:
    """Every TF of the TF list that is a dataset gene: the rows of heads, baselines and exports."""
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
    """Long table (tf, target, score, rank) of each regulator's `top` best targets (all if None).
    `tf` and `target` are categoricals over `genes` (the regulators are among them): two bytes a
    row where strings would take eight, and tables of the same genes concatenate as categoricals."""
    R, G = scores.shape
    names = pd.Index(genes)
    regulator_pos = names.get_indexer(regulators)
    scores = scores.copy()
    scores[np.arange(R), regulator_pos] = -np.inf  # no self-loops
    k = G - 1 if top is None else min(top, G - 1)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # k < G: the self-loop is always left out
    order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable"), 1)
    rows = np.repeat(np.arange(R), k)
    cols = order.ravel()
    return pd.DataFrame({
        "tf": pd.Categorical.from_codes(regulator_pos[rows], categories=names),
        "target": pd.Categorical.from_codes(cols, categories=names),
        "score": scores[rows, cols].astype(np.float32), "rank": np.tile(np.arange(1, k + 1), R),
    })


# ---------------------------------------------------------------------------------------
# Stage 2: heads
# ---------------------------------------------------------------------------------------
def train_heads(embeddings: GeneEmbeddings, prior_edges: pd.DataFrame, genes: pd.Index, regulators: np.ndarray, *,
                seed: int, device: str, epochs: int | None = None, min_steps: int | None = None,
                prior_pi: float | None = None, inputs: tuple[HeadInput, ...] = HEAD_INPUTS,
                objectives: tuple[str, ...] = OBJECTIVES, splits: tuple[str, ...] = (*SPLITS, "all"),
                log=None) -> EdgeHeads:
    """One Stage 2 head per (input, objective, split) on the 'all' cell set; `log(line)` hears of
    the heads done and the time left.

    Rows are every TF of the TF list (`regulators`); positives are the split's training edges;
    held-out edges are never seen (they are unlabeled like every other pair). `epochs`,
    `min_steps`, `prior_pi` (nnPU's class prior): None for EdgeHeadConfig's defaults.
    """
    settings = {k: v for k, v in (("epochs", epochs), ("min_steps", min_steps), ("prior_pi", prior_pi)) if v is not None}
    reg_index = pd.Index(genes).get_indexer(regulators)
    heads, histories = {}, []
    progress = ChunkLog(log, "heads", len(splits) * len(inputs) * len(objectives), "heads")
    for split in splits:
        positives = train_pairs(prior_edges, split, genes, regulators)
        for head_input in inputs:
            z = embeddings.of(head_input)
            for objective in objectives:
                config = EdgeHeadConfig(objective=objective, seed=seed, degree_features=head_input.degree_kinds(split),
                                        **settings)
                head, history = train_edge_head(z, reg_index, positives, config, device=device)
                heads[HeadKey(head_input, objective, split)] = edge_head_checkpoint(head)
                histories.append(history.assign(head=f"{head_input.name}/{objective}/{split}"))
                progress.advance()
    return EdgeHeads(regulators, heads, pd.concat(histories, ignore_index=True), asdict(config))


def _head_scores(heads: EdgeHeads, key: HeadKey, z: np.ndarray, regulators: np.ndarray, genes: pd.Index,
                 device: str) -> np.ndarray:
    head = load_edge_head(heads.heads[key], device=device)
    return score_all_pairs(head, z, pd.Index(genes).get_indexer(regulators), device=device)


# ---------------------------------------------------------------------------------------
# Every method's scores: the export and the evaluation
# ---------------------------------------------------------------------------------------
def method_scores(space: EdgeSpace, split: str, embeddings: GeneEmbeddings, heads: EdgeHeads,
                  baselines: BaselineScores, external_grns: list[dict], device: str,
                  inputs: tuple[HeadInput, ...] = HEAD_INPUTS, objectives: tuple[str, ...] = OBJECTIVES) -> dict[str, np.ndarray]:
    """(R, G) scores over `space` for every method of `split`: the heads, then the baselines.
    `external_grns`: one dict per table, {path, name (optional), source_col, target_col, score_col (optional)}."""
    _require_genes(space, embeddings, baselines)
    return {**head_scores(space, split, embeddings, heads, device, inputs, objectives),
            **baseline_scores(space, baselines, external_grns)}


def _require_genes(space: EdgeSpace, embeddings: GeneEmbeddings, baselines: BaselineScores) -> None:
    genes = pd.Index(space.genes)
    for asset, names in (("grn_embeddings", embeddings.genes), ("grn_baselines", baselines.genes)):
        if not genes.equals(pd.Index(names)):
            raise ValueError(f"{asset} has other genes (or another gene order) than the multiome; rematerialize {asset}")


def head_scores(space: EdgeSpace, split: str, embeddings: GeneEmbeddings, heads: EdgeHeads, device: str,
                inputs: tuple[HeadInput, ...] = HEAD_INPUTS, objectives: tuple[str, ...] = OBJECTIVES,
                cell_set: str = "all") -> dict[str, np.ndarray]:
    """Each head of `split` (`all`: trained on every prior edge) on `cell_set`'s embeddings."""
    genes = pd.Index(space.genes)
    return {x.method(o): _head_scores(heads, HeadKey(x, o, split), embeddings.of(x, cell_set), space.regulators,
                                      genes, device) for x in inputs for o in objectives}


def baseline_scores(space: EdgeSpace, baselines: BaselineScores, external_grns: list[dict]) -> dict[str, np.ndarray]:
    """The expression baselines, the degree baselines of the space and the imported GRNs."""
    rows = pd.Index(baselines.regulators).get_indexer(space.regulators)
    if (rows < 0).any():
        raise ValueError("baseline scores lack some evaluated regulators; rematerialize grn_baselines")
    out = {name: s[rows] for name, s in baselines.scores.items()}
    out.update(degree_baselines(space))
    for grn in external_grns:
        name = external_name(grn)
        if name in out:
            raise ValueError(f"two external GRNs are named {name!r}; give each external_grns entry its own name")
        out[name] = import_external_grn(grn["path"], space, **{k: grn[k] for k in EXTERNAL_COLUMNS if grn.get(k)})
    return out


# a regulator's constant row: its "top targets" would be an arbitrary pick among ties
NOT_EXPORTED = ("degree_tf_out",)


def export_scores(embeddings: GeneEmbeddings, heads: EdgeHeads, baselines: BaselineScores, prior_edges: pd.DataFrame,
                  top: int | None, device: str) -> pd.DataFrame:
    """Every evaluated method's GRN over every TF of the TF list × every gene, trained on every
    prior edge: the heads on each cell set's embeddings; the degree-only heads and the expression
    and degree baselines, which read no cell set, in `all`. Each TF's `top` targets; a head's
    scores are made a block of TFs at a time and cut to their top targets there, never as the
    whole TF × gene matrix."""
    genes = np.asarray(embeddings.genes, dtype=object)
    space = EdgeSpace.from_edges(heads.regulators, genes, prior_edges, prior_edges.iloc[:0])
    with_embedding = tuple(x for x in HEAD_INPUTS if x.embedding is not None)
    degrees_only = tuple(x for x in HEAD_INPUTS if x.embedding is None)
    tables, labels = [], []  # labels: each table's (context, method)
    for cell_set in embeddings.cell_sets:
        for x in with_embedding + (degrees_only if cell_set == "all" else ()):
            for objective in OBJECTIVES:
                tables.append(_head_top_targets(heads, HeadKey(x, objective, "all"), embeddings.of(x, cell_set), genes,
                                                top, device))
                labels.append((cell_set, x.method(objective)))
        if cell_set == "all":
            for method, scores in baseline_scores(space, baselines, []).items():
                if method not in NOT_EXPORTED:
                    tables.append(top_targets(scores, heads.regulators, genes, top))
                    labels.append(("all", method))
    lengths = [len(t) for t in tables]
    context, method = (_repeated([label[i] for label in labels], lengths) for i in (0, 1))
    kind = pd.Categorical([method_kind(m) for m in method.categories])[method.codes]
    out = pd.concat(tables, ignore_index=True)  # a 10x run: ~100 M rows, ~20 bytes each
    return pd.concat([pd.DataFrame({"context": context, "method": method, "kind": kind}), out], axis=1)


def _repeated(values: list[str], lengths: list[int]) -> pd.Categorical:
    """values[i] repeated lengths[i] times, as a categorical (a byte a row)."""
    categories = pd.Index(pd.unique(np.asarray(values, dtype=object)))
    return pd.Categorical.from_codes(np.repeat(categories.get_indexer(values), lengths), categories=categories)


def _head_top_targets(heads: EdgeHeads, key: HeadKey, z: np.ndarray, genes: np.ndarray, top: int | None,
                      device: str) -> pd.DataFrame:
    head = load_edge_head(heads.heads[key], device=device)
    regulators = np.asarray(heads.regulators, dtype=object)
    blocks = score_blocks(head, z, pd.Index(genes).get_indexer(regulators), device=device)
    return pd.concat([top_targets(block, regulators[i:i + len(block)], genes, top) for i, block in blocks],
                     ignore_index=True)


EXTERNAL_COLUMNS = ("source_col", "target_col", "score_col")


def external_name(grn: dict) -> str:
    """external_<name>, or external_<file name without suffixes> when the entry has no name."""
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


# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------
def evaluate_methods(methods: dict[str, np.ndarray], space: EdgeSpace, *, n_random: int, top_n: int,
                     seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One metrics row per method, and the per-regulator enrichment table of every method."""
    networks = null_networks(space, n_random=n_random, seed=seed)  # the same for every method
    rows, tables = [], []
    for name, scores in methods.items():
        rows.append({"method": name, "kind": method_kind(name),
                     **evaluate(scores, space, n_random=n_random, top_n=top_n, seed=seed, networks=networks)})
        tables.append(regulator_enrichment(scores, space, top_n=top_n, seed=seed).assign(method=name))
    return pd.DataFrame(rows), pd.concat(tables, ignore_index=True)


def evaluate_grn(genes: pd.Index, prior_edges: pd.DataFrame, embeddings: GeneEmbeddings, heads: EdgeHeads,
                 baselines: BaselineScores, *, external_grns: list[dict], n_random: int, top_n: int, device: str,
                 curves_path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Path]]:
    """Every method on each split's held-out prior edges: the `grn_metrics` and
    `grn_regulator_enrichment` rows, and the PR/ROC/P@K figure of the headline methods per split,
    written to ``curves_path(split)``."""
    settings = {"prior": str(prior_edges.prior.iloc[0]), "split_seed": int(prior_edges.split_seed.iloc[0]),
                "n_random": n_random, "profile": embeddings.profile,
                "head": {k: heads.config[k] for k in ("epochs", "min_steps", "prior_pi", "neg_ratio", "lr")}}
    metrics, enrichment, pictures = [], [], {}
    for split in SPLITS:
        space = edge_space(prior_edges, genes, split)
        methods = method_scores(space, split, embeddings, heads, baselines, external_grns, device=device)
        m, e = evaluate_methods(methods, space, n_random=n_random, top_n=top_n)
        metrics.append(m.assign(split=split, seed=heads.config["seed"], config=json.dumps(settings)))
        enrichment.append(e.assign(split=split))
        pictures[split] = curves_path(split)
        curves_png({k: methods[k] for k in HEADLINE_METHODS if k in methods}, space, pictures[split])
    return pd.concat(metrics, ignore_index=True), pd.concat(enrichment, ignore_index=True), pictures
