"""Stage 2 of EpiAwareNet: an MLP edge head on frozen gene embeddings, and the full-space export.

The Stage 1 backbone is frozen; each gene's final states averaged over a cell set give
``z`` (G, d). :class:`EdgeHead` scores an ordered pair (regulator, target) from
``[z_tf; z_target]``. Two objectives:

- ``"bce"``: training prior edges are positives, uniformly sampled unlabeled pairs are
  negatives (``neg_ratio`` per positive, resampled every epoch).
- ``"nnpu"``: the non-negative PU risk of Kiryo et al. 2017 (:func:`nnpu_risk`) on the same
  positive / unlabeled batches.

Unlabeled pairs are drawn uniformly from regulator × gene, never a self-pair and never a
training positive (:func:`~multiome_assets.grn.pairs.sample_unlabeled`).

:func:`score_all_pairs` exports the (R, G) logit matrix without redoing per-gene work per
pair: the first layer splits as ``W [z_tf; z_t] + b = W_tf z_tf + (W_t z_t + b)``.

Reference: tianyang-x/EpiAwareNet_pub ``epiaware/models/grn_head.py`` (head, nnPU loss),
``training/finetune_epiaware_grn.py`` (Stage 2 loop). Differences, on purpose: one hidden
layer with ReLU (the reference: two Swish layers of 512); the reference scores pairs per cell
and averages logits, here pairs are scored once on cell-averaged states; the reference's
nnPU uses the hinge loss and only clamps the negative risk at 0, here the surrogate is the
logistic loss by default (Kiryo's sigmoid loss as an option, see ``EdgeHeadConfig.nnpu_loss``)
and the non-negative correction steps on ``-gamma * negative_risk`` (Kiryo et al. Algorithm 1).
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from multiome_assets.grn.pairs import as_pairs, forbidden_flat_index, sample_unlabeled
from multiome_assets.models.checkpoint import Checkpoint
from multiome_assets.models.edge_head import EdgeHead, EdgeHeadConfig
from multiome_assets.models.trainer import Schedule, Step, fit, seeded

__all__ = [
    "nnpu_risk",
    "train_edge_head",
    "score_all_pairs",
    "score_blocks",
    "edge_head_checkpoint",
    "load_edge_head",
]


# ---------------------------------------------------------------------------------------------
# nnPU risk (Kiryo, Niu, du Plessis, Sugiyama 2017, "Positive-Unlabeled Learning with
# Non-Negative Risk Estimator", Algorithm 1)


def _surrogate(logits: torch.Tensor, y: float, kind: str) -> torch.Tensor:
    """Per-pair l(f, y) for label y in {+1, -1}."""
    if kind == "sigmoid":
        return torch.sigmoid(-y * logits)
    return F.softplus(-y * logits)


def _pu_parts(logits_pos, logits_unl, prior_pi, kind):
    """(pi * R_p^+, R_u^- - pi * R_p^-): positive risk and the (possibly negative) negative risk."""
    risk_pos = prior_pi * _surrogate(logits_pos, +1.0, kind).mean()
    risk_neg = _surrogate(logits_unl, -1.0, kind).mean() - prior_pi * _surrogate(logits_pos, -1.0, kind).mean()
    return risk_pos, risk_neg


def nnpu_risk(
    logits_pos: torch.Tensor,
    logits_unl: torch.Tensor,
    prior_pi: float,
    beta: float = 0.0,
    gamma: float = 1.0,
    *,
    loss: Literal["sigmoid", "logistic"] = "logistic",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative PU risk on a batch of positive and unlabeled logits.

    With ``l`` the surrogate loss (``loss``: ``"logistic"`` softplus(-y f), ``"sigmoid"``
    sigmoid(-y f)), ``R_p^+ = mean l(f_pos, +1)``, ``R_p^- = mean l(f_pos, -1)``,
    ``R_u^- = mean l(f_unl, -1)``, ``R_pos = pi * R_p^+`` and ``R_neg = R_u^- - pi * R_p^-``:

    - if ``R_neg >= -beta``: backpropagate the full risk ``R_pos + R_neg``;
    - else (the model overfits, the unbiased estimate went negative): backpropagate
      ``-gamma * R_neg``, i.e. step *up* the negative risk (Kiryo et al. Algorithm 1).

    Returns
    -------
    objective
        Scalar tensor to call ``.backward()`` on.
    risk
        Scalar tensor (no grad), the nnPU risk estimate ``R_pos + max(0, R_neg)`` >= 0.
    """
    risk_pos, risk_neg = _pu_parts(logits_pos, logits_unl, prior_pi, loss)
    if risk_neg.detach() < -beta:
        objective = -gamma * risk_neg
    else:
        objective = risk_pos + risk_neg
    risk = (risk_pos + risk_neg.clamp(min=0.0)).detach()
    return objective, risk


# ---------------------------------------------------------------------------------------------
# training


def train_edge_head(
    z: np.ndarray,
    regulator_index: np.ndarray,
    train_pairs: np.ndarray | sp.spmatrix,
    config: EdgeHeadConfig = EdgeHeadConfig(),
    device: str = "cpu",
) -> tuple[EdgeHead, pd.DataFrame]:
    """Train an :class:`EdgeHead` on frozen gene embeddings.

    Parameters
    ----------
    z
        (G, d) gene embeddings (backbone states averaged over a cell set).
    regulator_index
        (R,) column in ``z`` of each regulator (``EdgeSpace.regulator_gene_index``).
    train_pairs
        Training positives, either the (R, G) boolean matrix ``EdgeSpace.train`` (sparse or
        dense) or an (n, 2) int array of (regulator row in 0..R-1, gene column in 0..G-1).
        Duplicates are dropped; self-pairs among them are kept as positives.
    config
        :class:`EdgeHeadConfig`; ``seed`` fixes initialization, dropout and sampling.

    Returns
    -------
    head
        The trained head, in eval mode, on ``device``.
    history
        One row per epoch: ``epoch, loss`` (mean BCE, or mean nnPU risk), and for ``"nnpu"``
        also ``risk_pos`` (pi R_p^+), ``risk_neg`` (R_u^- - pi R_p^-, may be negative) and
        ``corrected`` (fraction of steps that took the non-negative correction).
    """
    z = np.ascontiguousarray(z, dtype=np.float32)
    G, d = z.shape
    regulator_index = np.asarray(regulator_index, dtype=np.int64)
    R = len(regulator_index)
    if R == 0 or regulator_index.min() < 0 or regulator_index.max() >= G:
        raise ValueError(f"regulator_index must be a non-empty array of gene columns in [0, {G})")
    pos_rows, pos_cols = as_pairs(train_pairs, R, G)
    n_pos = len(pos_rows)
    if n_pos == 0:
        raise ValueError("train_pairs holds no positive pair; Stage 2 needs prior edges")
    forbidden = forbidden_flat_index(regulator_index, pos_rows, pos_cols, G)
    pos_pairs = np.stack([pos_rows, pos_cols], axis=1)  # (P, 2)

    rng = np.random.default_rng(config.seed)
    reg = torch.from_numpy(regulator_index).to(device)
    with seeded(config.seed):
        head = EdgeHead(d, config).to(device)
        if config.degree_features:
            degree = {"out": np.bincount(regulator_index[pos_rows], minlength=G), "in": np.bincount(pos_cols, minlength=G)}
            own_gene = {"out": regulator_index[pos_rows], "in": pos_cols}  # whose degree the own edge raises
            head.degree = torch.log1p(torch.tensor(np.stack([degree[k] for k in config.degree_features], 1),
                                                   dtype=torch.float32, device=device))
            loo = torch.log1p(torch.tensor(np.stack([degree[k][own_gene[k]] - 1 for k in config.degree_features], 1),
                                           dtype=torch.float32, device=device))  # (P, n_degrees) without the own edge
        zt = head.gene_inputs(torch.from_numpy(z).to(device))  # (G, width)
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        n_steps = max(1, min(math.ceil(n_pos * (1 + config.neg_ratio) / config.batch_size), n_pos))  # per epoch
        n_epochs = max(config.epochs, math.ceil(config.min_steps / n_steps)) if config.epochs else 0

        def batches(rng):  # fresh unlabeled pairs every epoch, split as evenly as the positives
            unl_pairs = sample_unlabeled(config.neg_ratio * n_pos, R, G, forbidden, rng)  # (U, 2)
            pos_batches = np.array_split(rng.permutation(n_pos), n_steps)
            unl_batches = np.array_split(rng.permutation(len(unl_pairs)), n_steps)
            return [(p_idx, unl_pairs[u_idx]) for p_idx, u_idx in zip(pos_batches, unl_batches)]

        def step(net, batch) -> Step:
            p_idx, unlabeled = batch
            pairs = torch.from_numpy(np.concatenate([pos_pairs[p_idx], unlabeled])).to(device)
            n_p = len(p_idx)
            x_tf, x_target = zt[reg[pairs[:, 0]]], zt[pairs[:, 1]]  # (B, width) each, fresh copies
            if config.degree_features:
                own = loo[torch.from_numpy(p_idx).to(device)]
                for j, kind in enumerate(config.degree_features):  # the TF side's out-degree, the target's in-degree
                    (x_tf if kind == "out" else x_target)[:n_p, d + j] = own[:, j]
            if config.objective == "bce":
                labels = torch.zeros(len(pairs), device=device)
                labels[:n_p] = 1.0
                _, objective = net(x_tf, x_target, labels)
                return Step(objective, rows=len(pairs), weight=1, total=1)
            logits, _ = net(x_tf, x_target)  # (B,)
            objective, risk = nnpu_risk(logits[:n_p], logits[n_p:], config.prior_pi, config.nnpu_beta,
                                        config.nnpu_gamma, loss=config.nnpu_loss)
            r_pos, r_neg = _pu_parts(logits[:n_p].detach(), logits[n_p:].detach(), config.prior_pi, config.nnpu_loss)
            return Step(objective, rows=len(pairs), weight=1, total=1, value=risk.item(),
                        extra={"risk_pos": r_pos.item(), "risk_neg": r_neg.item(),
                               "corrected": float(r_neg.item() < -config.nnpu_beta)})

        history, _ = fit(head, optimizer, None, rng, Schedule(n_epochs), batches=batches, step=step)
    head.eval()
    columns = ["epoch", "loss"] + (["risk_pos", "risk_neg", "corrected"] if config.objective == "nnpu" else [])
    history = history.rename(columns={"train_loss": "loss"}).assign(epoch=lambda h: h.epoch - 1) if len(history) else history
    return head, history.reindex(columns=columns)


# ---------------------------------------------------------------------------------------------
# export

_BLOCK_FLOATS = 1 << 19  # hidden activations per block (2 MiB fp32): measured fastest on a 2-core CPU


def score_all_pairs(head: EdgeHead, z: np.ndarray, regulator_index: np.ndarray, *, chunk: int = 32,
                    gene_chunk: int | None = None, device: str = "cpu", num_threads: int | None = None) -> np.ndarray:
    """(R, G) float32 logits of every regulator x gene pair, in eval mode (no dropout); for the
    export of a large network, :func:`score_blocks` without the whole matrix."""
    R, G = len(regulator_index), len(z)
    out = np.empty((R, G), dtype=np.float32)
    for start, block in score_blocks(head, z, regulator_index, chunk=chunk, gene_chunk=gene_chunk, device=device,
                                     num_threads=num_threads):
        out[start:start + len(block)] = block
    return out


@torch.inference_mode()
def score_blocks(head: EdgeHead, z: np.ndarray, regulator_index: np.ndarray, *, chunk: int = 32,
                 gene_chunk: int | None = None, device: str = "cpu", num_threads: int | None = None):
    """Yields (first row, (r, G) float32 logits) for `chunk` regulators at a time x every gene: the
    memory of `chunk` rows, never the (R, G) matrix (36,600 genes: 4.7 MB a block).

    ``W [z_tf; z_t] + b = W_tf z_tf + (W_t z_t + b)``: ``A = z[reg] W_tf^T`` (R, H) and
    ``B = z W_t^T + b`` (G, H) are computed once; each block of ``chunk`` regulators x
    ``gene_chunk`` genes then costs ``relu(A[:, None] + B[None]) @ w2 + b2`` in a reused
    ``chunk * gene_chunk * H`` float buffer. The default ``gene_chunk`` keeps that buffer at
    2 MiB (cache-sized); on a GPU pass larger blocks.

    ``num_threads`` sets torch's intra-op threads for the call (restored after). The blocks
    are small parallel regions: 1,639 x 20,000 pairs at H=256 took 2.4 s with 2 threads and
    4.9 s with 1 on an idle 2-core CPU, but 40-190 s with 2 threads when other processes
    kept the cores busy (threads spin at each barrier); pass 1 on a shared machine.
    """
    z = np.ascontiguousarray(z, dtype=np.float32)
    G, d = z.shape
    regulator_index = np.asarray(regulator_index, dtype=np.int64)
    R = len(regulator_index)
    if d != head.n_embd:
        raise ValueError(f"z has width {d}, the head was trained on width {head.n_embd}")
    if R and (regulator_index.min() < 0 or regulator_index.max() >= G):
        raise ValueError(f"regulator_index must hold gene columns in [0, {G})")
    if head.config.degree_features:
        z = np.hstack([z, head.degree.cpu().numpy()])
        d = z.shape[1]
    H = head.fc1.out_features
    gene_chunk = gene_chunk or max(1, _BLOCK_FLOATS // (chunk * H))
    was_training, threads = head.training, torch.get_num_threads()
    head.eval()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        W1 = head.fc1.weight.to(device=device, dtype=torch.float32)  # (H, 2d)
        b1 = head.fc1.bias.to(device=device, dtype=torch.float32)  # (H,)
        w2 = head.fc2.weight[0].to(device=device, dtype=torch.float32)  # (H,)
        b2 = float(head.fc2.bias[0])
        zt = torch.from_numpy(z).to(device)
        A = zt[torch.from_numpy(regulator_index).to(device)] @ W1[:, :d].T  # (R, H)
        B = torch.addmm(b1, zt, W1[:, d:].T)  # (G, H)
        rows = torch.empty(chunk, G, device=device)
        buf = torch.empty(chunk, gene_chunk, H, device=device)  # reused: no per-block allocation
        obuf = torch.empty(chunk, gene_chunk, device=device)
        for i in range(0, R, chunk):
            a = A[i : i + chunk]  # (r, H)
            r = a.shape[0]
            for j in range(0, G, gene_chunk):
                b = B[j : j + gene_chunk]  # (g, H)
                g = b.shape[0]
                h = buf[:r, :g]  # (r, g, H)
                torch.add(a[:, None, :], b[None, :, :], out=h)
                h.relu_()
                o = obuf[:r, :g]
                torch.matmul(h, w2, out=o)  # (r, g)
                rows[:r, j : j + g] = o
            yield i, (rows[:r] + b2).cpu().numpy()
    finally:
        head.train(was_training)
        if num_threads is not None:
            torch.set_num_threads(threads)


def edge_head_checkpoint(head: EdgeHead) -> Checkpoint:
    return Checkpoint("edge_head", asdict(head.config), head.state_dict())


def load_edge_head(checkpoint: Checkpoint, device: str = "cpu") -> EdgeHead:
    """Rebuild an :class:`EdgeHead` (eval mode) from :func:`edge_head_checkpoint`."""
    config = checkpoint.model_config(EdgeHeadConfig, "edge_head")
    width = checkpoint.weights["fc1.weight"].shape[1] // 2  # fc1 reads [z_tf; z_target], each n_embd + degrees
    head = EdgeHead(width - len(config.degree_features), config)
    head.degree = torch.empty_like(checkpoint.weights["degree"])
    head.load_state_dict(checkpoint.weights)
    return head.to(device).eval()
