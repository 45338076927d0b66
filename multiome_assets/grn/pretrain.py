"""Stage 1 of EpiAwareNet: masked-gene pretraining of the backbone, checkpoints, gene embeddings.

Pretraining hides ``mask_fraction`` of the genes of every cell (their values never reach the
model, see :meth:`GRNTransformer.embed_genes`) and reconstructs them from the final gene
states with a negative-binomial decoder. The NB needs integer counts:
:func:`multiome_assets.preprocess.nb_targets` says where they come from.

Training follows the reference (training/train_epiaware_backbone.py): AdamW, cosine schedule
over the planned steps, gradient clipping at 1.0, a held-out validation set of cells (seeded)
with fixed validation masks so epochs compare, and early stopping on the validation NB loss
with the best weights kept.

Reference: tianyang-x/EpiAwareNet_pub. Differences, on purpose: masked values are hidden from
the input (the reference reconstructs values it also feeds in); the reference's 12-layer
decoder of width 512 is a 2-layer one here; the decoder mean has a size factor from the
visible genes; gene identity embeddings start from expression SVD loadings (:func:`svd_identity_init`,
``gene_id_init="random"`` restores the reference's N(0, 1) start) -- on the planted-network
simulation this lifts held-out edge AUROC from the backbone's embeddings from 0.53-0.56 to
0.65-0.66 and lowers the validation NB loss (multiome_assets_tests/grn/test_simulation.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from multiome_assets.files import as_path
from multiome_assets.grn.artifacts import Backbone
from multiome_assets.models import distributed, resume
from multiome_assets.models.checkpoint import Checkpoint
from multiome_assets.models.grn_transformer import GRNTransformer, GRNTransformerConfig
from multiome_assets.models.precision import autocast, training_amp
from multiome_assets.models.progress import ChunkLog
from multiome_assets.models.profiles import Profile
from multiome_assets.models.trainer import Schedule, Step, cpu_weights, fit, seeded
from multiome_assets.preprocess import nb_targets

__all__ = ["PretrainConfig", "PROFILES", "pretrain_backbone", "svd_identity_init", "load_backbone", "gene_embeddings"]


@dataclass(frozen=True)
class PretrainConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 10  # reference default
    max_steps: int | None = None  # optimizer steps in all; None: max_epochs decides
    patience: int = 3  # epochs without a better validation loss before stopping
    val_fraction: float = 0.1
    grad_clip: float = 1.0
    grad_checkpointing: bool = False  # recompute blocks in backward: ~1/3 more compute, far less memory
    seed: int = 42
    gene_id_init: str = "svd"  # "svd": gene identity embeddings start as expression loadings; "random": N(0, 1)
    peak_id_init: str = "random"  # "svd": peak identity embeddings start as accessibility loadings; "random": N(0, 1)
    svd_solver: str = "randomized"  # of the "svd" starts: "randomized" (seeded, 5 power iterations) or "arpack" (exact)
    # compute budgets (None: every cell). Each epoch trains on a fresh seeded sample of the training
    # cells; validation on a fixed sample; embeddings average a seeded sample of each cell set.
    cells_per_epoch: int | None = None
    max_val_cells: int | None = None
    embed_cells_per_set: int | None = None
    embed_cells_per_type: int | None = None  # None: embed_cells_per_set


# name -> (GRNTransformerConfig overrides, training config)
PROFILES: dict[Profile, tuple[dict, PretrainConfig]] = {
    "paper": ({}, PretrainConfig()),  # d=256, 6 layers, 8 heads: meant for a GPU
    # bundled SNARE-seq (385 cells x 8,595 genes) in a few minutes on 2 CPU cores. The cost there
    # is sparse attention and kNN over 8,595 genes, not matmuls: d is cut, the method's k and K are kept;
    # 16 candidates keep 98% of the 100 kb links (mean 5.7 per gene) at a third of the cross-
    # attention cost; a larger batch shares the zero-peak tokens; one epoch (the demo backbone:
    # val NB NLL 0.251 -> 0.213); five did not help the GRN metrics (docs/results.md).
    # The cell budgets leave the bundled datasets (385 and 500 cells) whole; at a 10x run's 12,000
    # cells they bound an epoch, its validation and the embeddings (docs/performance.md#budgets).
    "cpu": (
        dict(d_model=32, n_layers=2, n_heads=4, max_candidates=16),
        PretrainConfig(lr=2e-3, batch_size=32, max_epochs=1, patience=1,
                       cells_per_epoch=500, max_val_cells=128, embed_cells_per_set=500,
                       embed_cells_per_type=100),
    ),
}


def svd_identity_init(x: sp.csr_matrix, d: int, seed: int, solver: str = "randomized") -> np.ndarray:
    """(features, d) starting identity embeddings of the genes (or peaks) of a cells x features
    matrix: loadings V*S of the top-d truncated SVD with each feature scaled to unit variance (not
    centered, so it stays sparse; the first component then carries the mean), scaled to unit RMS
    (as nn.Embedding's N(0, 1) init).

    `solver`: "randomized" (scikit-learn's default, 5 power iterations; its trailing components
    depend on `seed`: on the bundled data 5-9 of 32 directions differ from the exact SVD's) or
    "arpack" (solved to convergence: the same start whatever the seed).

    Cosine similarity of two rows then approximates the features' correlation, so the kNN gene
    graph links co-expressed genes from the first step, and the cell-averaged states that Stage 2
    reads start from co-expression (and co-accessibility) rather than noise. Components beyond
    the data's rank are zero (training moves them).
    """
    from sklearn.decomposition import TruncatedSVD

    if solver not in ("randomized", "arpack"):
        raise ValueError(f"svd_solver must be 'randomized' or 'arpack', got {solver!r}")
    x = sp.csr_matrix(x, dtype=np.float64)
    mean = np.asarray(x.mean(0)).ravel()
    std = np.sqrt(np.maximum(np.asarray(x.multiply(x).mean(0)).ravel() - mean**2, 0.0))
    scaled = x @ sp.diags(np.divide(1.0, std, out=np.zeros_like(std), where=std > 0))  # sparse: not centered
    k = min(d, min(scaled.shape) - 1)
    out = np.zeros((x.shape[1], d))
    if k > 0:
        svd = TruncatedSVD(n_components=k, algorithm=solver, random_state=seed if solver == "randomized" else 0)
        svd.fit(scaled)
        out[:, :k] = svd.components_.T * svd.singular_values_
    rms = np.sqrt(np.mean(out**2))
    return (out / rms if rms > 0 else out).astype(np.float32)


def _dense(m: sp.csr_matrix, rows: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(m[rows].toarray().astype(np.float32, copy=False)).to(device)


def _masks(n: int, n_genes: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """(n, G) bool, Bernoulli(fraction) per gene, at least one masked gene per cell."""
    u = torch.rand(n, n_genes, generator=gen)
    mask = u < fraction
    empty = ~mask.any(1)
    mask[empty, u[empty].argmin(1)] = True
    return mask


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_val = min(n - 1, max(1, round(fraction * n))) if fraction > 0 and n > 1 else 0
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def pretrain_backbone(
    rna: sp.csr_matrix,
    atac: sp.csr_matrix,
    candidates: np.ndarray,
    *,
    counts: sp.csr_matrix | None = None,
    model_config: GRNTransformerConfig,
    train_config: PretrainConfig = PretrainConfig(),
    device: str = "cpu",
    gene_names=None,
    peak_names=None,
    amp: bool | None = None,
    log=None,
    checkpoint: Path | None = None,
) -> tuple[Backbone, pd.DataFrame]:
    """Pretrain the backbone by masked NB reconstruction; early-stop on held-out cells.

    Under torchrun (a torch.distributed process group initialized), each process trains on its
    shard of every batch and DDP averages the gradients: the steps of one process on the whole
    batch (:mod:`multiome_assets.models.distributed`); process 0 logs and writes the checkpoint.

    Parameters
    ----------
    rna
        (cells, genes) model input values (e.g. log-normalized expression).
    atac
        (cells, peaks) accessibility, binary.
    candidates
        (genes, C) int candidate peak columns per gene ranked by distance, -1 padded.
    counts
        (cells, genes) raw counts for the NB targets; None: derived from ``rna`` (:func:`multiome_assets.preprocess.nb_targets`).
    device
        ``"cpu"`` or ``"cuda"``.
    amp
        bf16 autocast; None: on for a GPU with native bf16, off for CPU.
    log
        Optional ``callable(str)``: a line per epoch and, inside long epochs, one at most every
        30 s (loss, cells/s).
    checkpoint
        Where the training's whole state goes after every epoch (:mod:`multiome_assets.models.resume`);
        when it holds an interrupted training of the same configuration and data, training resumes
        from it (on CPU, to the weights an uninterrupted run ends with). None: no checkpoint.

    Returns
    -------
    backbone
        :class:`~multiome_assets.grn.artifacts.Backbone` with the best-validation weights (on CPU).
    history
        One row per epoch: ``epoch, train_loss, val_loss`` (mean NB NLL per masked gene); epoch 0
        is the untrained model (validation loss only).
    """
    rna, atac = sp.csr_matrix(rna, dtype=np.float32), sp.csr_matrix(atac, dtype=np.float32)
    cfg, tc = model_config, train_config
    n_cells, n_genes = rna.shape
    if (n_genes, atac.shape[1]) != (cfg.n_genes, cfg.n_peaks) or atac.shape[0] != n_cells:
        raise ValueError(
            f"rna {rna.shape} and atac {atac.shape} must be (cells, n_genes={cfg.n_genes}) and (cells, n_peaks={cfg.n_peaks})"
        )
    candidates = np.asarray(candidates, dtype=np.int64)
    checkpoint = None if checkpoint is None else as_path(checkpoint)  # a local file or a URL
    targets, nb_target = nb_targets(rna, counts)
    dev = torch.device(device)
    amp = training_amp(dev) if amp is None else amp
    rng = np.random.default_rng(tc.seed)
    train_idx, val_idx = _split(n_cells, tc.val_fraction, rng)
    if tc.max_val_cells is not None and len(val_idx) > tc.max_val_cells:
        val_idx = np.sort(np.random.default_rng(tc.seed + 2).choice(val_idx, tc.max_val_cells, replace=False))
    per_epoch = len(train_idx) if tc.cells_per_epoch is None else min(len(train_idx), tc.cells_per_epoch)
    bs = tc.batch_size
    steps_per_epoch = math.ceil(per_epoch / bs)
    total_steps = min(tc.max_epochs * steps_per_epoch, tc.max_steps or math.inf)
    configs = {"model_config": asdict(cfg), "train_config": asdict(tc)}
    data = resume.fingerprint(rna.indptr, rna.indices, rna.data, atac.indptr, atac.indices, targets.data, candidates)
    with seeded(tc.seed, dev):
        model = GRNTransformer(cfg, torch.from_numpy(candidates), grad_checkpointing=tc.grad_checkpointing)
        for name, init, x in (("gene_id", tc.gene_id_init, rna), ("peak_id", tc.peak_id_init, atac)):
            if init not in ("svd", "random"):
                raise ValueError(f"{name}_init must be 'svd' or 'random', got {init!r}")
            if init == "svd" and hasattr(model, name):  # the RNA-only model has no peak_id
                with torch.no_grad():
                    getattr(model, name).weight.copy_(torch.from_numpy(svd_identity_init(x, cfg.d_model, tc.seed, tc.svd_solver)))
        model = model.to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
        mask_gen = torch.Generator().manual_seed(tc.seed)
        val_masks = _masks(len(val_idx), n_genes, cfg.mask_fraction, torch.Generator().manual_seed(tc.seed + 1))

        def batches(rng):
            order = train_idx[rng.permutation(len(train_idx))][:per_epoch]  # a fresh sample each epoch
            return [order[start:start + bs] for start in range(0, len(order), bs)]

        def step(net, batch) -> Step:
            batch_mask = _masks(len(batch), n_genes, cfg.mask_fraction, mask_gen)  # the global batch's
            mine = distributed.shard(len(batch))
            run = distributed.stand_in(mine, len(batch))  # weighted 0 when this process has no rows
            rows, mask = batch[run], batch_mask[run].to(dev)
            with autocast(dev, amp):
                _, loss = net(_dense(rna, rows, dev), _dense(atac, rows, dev), mask, _dense(targets, rows, dev))
            return Step(loss, rows=len(batch[mine]), weight=int(batch_mask[mine].sum()), total=int(batch_mask.sum()))

        def validate() -> float:
            return _validate(model, rna, atac, targets, val_idx, val_masks, bs, dev, amp)

        history, state = fit(model, opt, sched, rng, Schedule(tc.max_epochs, tc.patience, total_steps, tc.grad_clip),
                             batches=batches, step=step, validate=validate if len(val_idx) else None,
                             validate_untrained=True, checkpoint=checkpoint, configs=configs, data=data,
                             generators={"masks": mask_gen}, log=log, name="backbone")
    features = {name: list(map(str, names)) for name, names in (("genes", gene_names), ("peaks", peak_names))
                if names is not None}
    history = history.reindex(columns=["epoch", "train_loss", "val_loss"])
    backbone = Backbone(Checkpoint("grn_backbone", asdict(cfg), cpu_weights(model), features), asdict(tc), candidates,
                        state["best_epoch"], float(state["best"]) if len(val_idx) else float("nan"), nb_target, history)
    return backbone, history


@torch.no_grad()
def _validate(model, rna, atac, targets, idx, masks, bs, dev, amp) -> float:
    """Mean NB NLL per masked gene over the validation cells, with fixed masks."""
    if len(idx) == 0:
        return float("nan")
    model.eval()
    nll_sum, n_masked = 0.0, 0
    for start in range(0, len(idx), bs):
        rows, mask = idx[start : start + bs], masks[start : start + bs].to(dev)
        with autocast(dev, amp):
            _, loss = model(_dense(rna, rows, dev), _dense(atac, rows, dev), mask, _dense(targets, rows, dev))
        nll_sum, n_masked = nll_sum + loss.item() * int(mask.sum()), n_masked + int(mask.sum())
    return nll_sum / n_masked


def load_backbone(backbone: Backbone, device: str = "cpu", *, genes=None, peaks=None) -> GRNTransformer:
    """Rebuild the pretrained backbone in eval mode; refused (with what differs) when `genes` or
    `peaks` are given and are not the ones it was trained on, in the same order."""
    ckpt = backbone.checkpoint
    config = ckpt.model_config(GRNTransformerConfig, "grn_backbone")
    ckpt.require_features(**{k: v for k, v in (("genes", genes), ("peaks", peaks)) if v is not None})
    model = GRNTransformer(config, torch.as_tensor(np.asarray(backbone.candidates), dtype=torch.long))
    model.load_state_dict(ckpt.weights)
    return model.to(device).eval()


@torch.no_grad()
def gene_embeddings(
    model: GRNTransformer,
    rna: sp.csr_matrix,
    atac: sp.csr_matrix,
    cell_sets: dict[str, np.ndarray],
    *,
    batch_size: int = 32,
    device: str = "cpu",
    amp: bool | None = None,
    log=None,
) -> dict[str, np.ndarray]:
    """Final gene states of the frozen backbone (eval mode, nothing masked) averaged per cell set;
    `log(line)` hears of the cells done and the time left.

    One pass over the cells that belong to any set; each cell's (G, d) states are added into
    every set holding it (a (sets, cells) membership matmul per batch). The model is moved to
    ``device``; its train/eval mode is restored afterwards.

    Returns
    -------
    dict
        set name -> (G, d) float32 mean state.
    """
    rna, atac = sp.csr_matrix(rna, dtype=np.float32), sp.csr_matrix(atac, dtype=np.float32)
    n_cells = rna.shape[0]
    names = list(cell_sets)
    member = np.zeros((len(names), n_cells), dtype=np.float32)
    for s, name in enumerate(names):
        idx = np.asarray(cell_sets[name], dtype=np.int64)
        if idx.size == 0 or idx.min() < 0 or idx.max() >= n_cells:
            raise ValueError(f"cell set {name!r} must hold at least one cell index in [0, {n_cells})")
        member[s, idx] = 1.0
    cells = np.flatnonzero(member.any(0))
    dev = torch.device(device)
    amp = training_amp(dev) if amp is None else amp
    was_training = model.training
    model.to(dev).eval()
    G, d = model.config.n_genes, model.config.d_model
    sums = torch.zeros(len(names), G * d, dtype=torch.float64, device=dev)
    member_t = torch.from_numpy(member).to(dev)
    progress = ChunkLog(log, "embeddings", len(cells), "cells")
    for start in range(0, len(cells), batch_size):
        rows = cells[start : start + batch_size]
        with autocast(dev, amp):
            states, _ = model(_dense(rna, rows, dev), _dense(atac, rows, dev) if model.config.use_atac else None)
        sums += (member_t[:, rows] @ states.float().reshape(len(rows), G * d)).double()
        progress.advance(len(rows))
    model.train(was_training)
    means = sums / torch.from_numpy(member.sum(1)).to(dev, torch.float64)[:, None]
    return {name: means[s].view(G, d).float().cpu().numpy() for s, name in enumerate(names)}
