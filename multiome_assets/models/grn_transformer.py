"""EpiAwareNet Stage 1 backbone: genes attend to their kNN genes and to Top-K candidate peaks.

Faithful to the method of EpiAwareNet (KDD 2026; reference code tianyang-x/EpiAwareNet_pub,
epiaware/models/{backbone,attention}.py), re-derived for speed and memory:

- Tokens: value projection + learned identity embedding + type embedding, for genes and peaks.
- Each block (post-LayerNorm, residual around each part): sparse gene-gene attention over the
  k nearest genes by cosine similarity (self excluded, as in the reference; the residual carries
  the gene itself), gene -> peak cross-attention over the gene's candidate peaks with Top-K
  routing, a gene FFN and a peak FFN. The kNN graph is built once per cell from the initial gene
  states (masked values already hidden) and reused by every block.
- Peak tokens only interact with themselves (FFN), so a peak's state is a function of
  (peak, value). We keep only peaks that are some gene's candidate, compute the zero-valued token
  of each kept peak once per batch (shared by all cells) and a token per non-zero (cell, peak).
  Dropout masks on the shared zero tokens are therefore shared by the cells of a batch.
  The last block's peak FFN would feed nothing and does not exist.
- Both attentions are sparse matrix products (`models.sparse_attention`): keys and values are
  never materialised per (cell, gene, neighbour or candidate). Top-K routing selects without
  autograd, so backward only touches the K kept candidates.
- kNN (exact, `models.knn`): genes with value 0 that are not hidden share one state across cells,
  so their mutual similarities are computed once per batch.
- Optional block recomputation in backward (`grad_checkpointing`) trades ~1/4 more time for memory.

`hidden` below is the (B, G) bool of genes whose values are hidden for masked reconstruction;
attention masks elsewhere in `models/` mean "may attend".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from multiome_assets.models.knn import knn_indices
from multiome_assets.models.layers import Dropout, FeedForward
from multiome_assets.models.sparse_attention import (
    Pattern,
    by_head,
    head_pattern,
    neighbour_pattern,
    sampled_dot,
    weighted_sum,
)


@dataclass(frozen=True)
class GRNTransformerConfig:
    n_genes: int
    n_peaks: int
    d_model: int = 256
    n_layers: int = 6
    n_heads: int = 8
    dropout: float = 0.1
    top_k: int = 8  # peaks kept per gene and head by Top-K routing
    k_neighbors: int = 16
    max_candidates: int = 50  # candidates beyond this rank (by distance) are dropped
    mask_fraction: float = 0.15
    use_atac: bool = True  # False: RNA-only ablation, no peak tokens and no cross-attention
    ffn_mult: int = 2  # reference trains with ffn_dim=512 at d_model=256


class GeneSelfAttention(nn.Module):
    """Multi-head attention of every gene over its k nearest genes (fixed per cell)."""

    def __init__(self, config: GRNTransformerConfig):
        super().__init__()
        self.n_heads, d = config.n_heads, config.d_model
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.attn_dropout = Dropout(config.dropout)

    def forward(self, x, neighbours: Pattern):
        """(B, G, d), `neighbour_pattern` of the cells' kNN graph -> (B, G, d)."""
        B, G, d = x.size()
        H, hd = self.n_heads, d // self.n_heads
        q, k, v = self.qkv(x).view(B * G, 3 * d).split(d, dim=1)
        with torch.autocast(x.device.type, enabled=False):
            logits = sampled_dot(by_head(q, H) * hd**-0.5, by_head(k, H), neighbours)  # (B*G*H, k)
            y = weighted_sum(self.attn_dropout(logits.softmax(dim=-1)), by_head(v, H), neighbours)
        return self.proj(y.view(B, G, d))


class CandidateCrossAttention(nn.Module):
    """Each gene attends to its candidate peaks, keeping the top_k logits per head (renormalized).

    Genes without candidates get exactly zero output. Top-K routing picks the K candidates from
    logits computed without autograd, then recomputes those K logits with it: backward touches K,
    not all C, candidates per gene and head.
    """

    def __init__(self, config: GRNTransformerConfig):
        super().__init__()
        self.n_heads, self.top_k, d = config.n_heads, config.top_k, config.d_model
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)
        self.attn_dropout = Dropout(config.dropout)

    def forward(self, x, peaks, plan):
        B, G, d = x.size()
        if peaks.shape[0] == 0:  # no gene has a candidate peak
            return torch.zeros_like(x)
        H, hd = self.n_heads, d // self.n_heads
        candidates, valid, has = plan["pattern"], plan["valid"], plan["has_cand"]  # rows (b, g, h); (B*G*H, C); (G,)
        k, v = self.kv(peaks).split(d, dim=1)  # (P'+Z, d): shared zero tokens, then non-zero tokens
        q = self.q(x).view(B * G, d)
        with torch.autocast(x.device.type, enabled=False):
            q, k, v = by_head(q, H) * hd**-0.5, by_head(k, H), by_head(v, H)
            pattern = candidates
            if self.top_k < candidates.M:  # Top-K routing: renormalized softmax over the K largest logits
                routes = plan.setdefault("routes", {})  # one plan per forward: block recomputation reuses them
                if self not in routes:
                    with torch.no_grad():
                        logits = candidates.sample(q, k).masked_fill_(~valid, -math.inf)
                        routes[self] = logits.topk(self.top_k, dim=-1, sorted=False).indices
                top = routes[self]
                pattern = Pattern(candidates.col.view(-1, candidates.M).gather(1, top), candidates.shape[1])
                valid = valid.gather(1, top)
            logits = sampled_dot(q, k, pattern).masked_fill(~valid, -math.inf)
            logits = logits.masked_fill(~valid.any(1, keepdim=True), 0.0)  # genes without candidates: no NaN
            w = self.attn_dropout(logits.softmax(dim=-1)) * valid
            y = weighted_sum(w, v, pattern)  # (B*G*H, hd)
        y = self.proj(y.view(B, G, d))
        return y * has.view(1, G, 1).to(y.dtype)


class Block(nn.Module):
    def __init__(self, config: GRNTransformerConfig, update_peaks: bool):
        super().__init__()
        d, self.use_atac = config.d_model, config.use_atac
        self.attn, self.ln_1 = GeneSelfAttention(config), nn.LayerNorm(d)
        if config.use_atac:
            self.cross, self.ln_2 = CandidateCrossAttention(config), nn.LayerNorm(d)
        self.mlp, self.ln_3 = FeedForward(d, config.ffn_mult, config.dropout), nn.LayerNorm(d)
        self.peak_mlp = FeedForward(d, config.ffn_mult, config.dropout) if update_peaks else None
        self.ln_peak = nn.LayerNorm(d) if update_peaks else None
        self.dropout = Dropout(config.dropout)

    def forward(self, x, neighbours, peaks=None, plan=None):
        x = self.ln_1(x + self.dropout(self.attn(x, neighbours)))
        if self.use_atac:
            x = self.ln_2(x + self.dropout(self.cross(x, peaks, plan)))
        x = self.ln_3(x + self.dropout(self.mlp(x)))
        if self.peak_mlp is not None:
            peaks = self.ln_peak(peaks + self.dropout(self.peak_mlp(peaks)))
        return x, peaks


def nb_nll(y, log_mu, theta):
    """Negative binomial negative log-likelihood per entry (mean mu = exp(log_mu), inverse dispersion theta)."""
    log_theta_mu = torch.logaddexp(torch.log(theta), log_mu)
    ll = (
        torch.lgamma(y + theta) - torch.lgamma(theta) - torch.lgamma(y + 1)
        + theta * (torch.log(theta) - log_theta_mu) + y * (log_mu - log_theta_mu)
    )
    return -ll


class GRNTransformer(nn.Module):
    def __init__(self, config: GRNTransformerConfig, candidates: torch.Tensor, *, grad_checkpointing: bool = False):
        super().__init__()
        self.config = c = config
        self.grad_checkpointing = grad_checkpointing  # recompute each block in backward: far less memory
        d = c.d_model
        assert d % c.n_heads == 0, f"d_model={d} must be divisible by n_heads={c.n_heads}"
        self.gene_id = nn.Embedding(c.n_genes, d)
        self.gene_value = nn.Linear(1, d)
        self.mask_token = nn.Parameter(torch.randn(d) * 0.02)  # replaces the value of masked genes
        self.gene_type = nn.Parameter(torch.randn(d) * 0.02)
        if c.use_atac:
            cand = torch.as_tensor(candidates, dtype=torch.long)
            assert cand.ndim == 2 and cand.shape[0] == c.n_genes, f"candidates must be (n_genes={c.n_genes}, C), got {tuple(cand.shape)}"
            assert cand.numel() == 0 or int(cand.max()) < c.n_peaks, f"candidate peak index >= n_peaks={c.n_peaks}"
            cand = cand[:, : c.max_candidates]
            used, compact = torch.unique(cand[cand >= 0], return_inverse=True)  # only peaks some gene can see
            cc = torch.full_like(cand, -1)
            cc[cand >= 0] = compact
            self.register_buffer("peak_index", used, persistent=False)  # (P',) peak ids that get tokens
            self.register_buffer("cand", cc, persistent=False)  # (G, C) indices into peak_index, -1 pad
            self.peak_id = nn.Embedding(c.n_peaks, d)
            self.peak_value = nn.Linear(1, d)
            self.peak_type = nn.Parameter(torch.randn(d) * 0.02)
        self.drop = Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c, c.use_atac and i < c.n_layers - 1) for i in range(c.n_layers))
        self.decoder = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.LayerNorm(d), nn.Linear(d, 2))

    def embed_genes(self, gene_values, hidden=None):
        """(B, G) values, (B, G) bool -> (B, G, d) initial states; hidden values never enter."""
        x = gene_values.unsqueeze(-1)
        if hidden is not None:
            x = x.masked_fill(hidden.unsqueeze(-1), 0.0)
        v = self.gene_value(x)  # (B, G, d)
        if hidden is not None:
            v = torch.where(hidden.unsqueeze(-1), self.mask_token.to(v.dtype), v)
        return v + self.gene_id.weight + self.gene_type

    def _peak_plan(self, peak_values):
        """Peak tokens (P' shared zero tokens + Z non-zero (cell, peak) tokens) and the candidate pattern.

        Candidate c of gene g in cell b is the cell's own token where the peak is non-zero there,
        else the peak's shared zero token; pads point at token 0 and are marked invalid.
        """
        B, G, C = peak_values.shape[0], *self.cand.shape
        P, H = self.peak_index.numel(), self.config.n_heads
        xv = peak_values[:, self.peak_index]  # (B, P')
        bz, uz = xv.nonzero(as_tuple=True)  # (Z,) each, row-major
        tok = torch.full((B, P), -1, dtype=torch.long, device=xv.device)
        tok[bz, uz] = torch.arange(bz.numel(), device=xv.device) + P
        cand = self.cand.clamp(min=0)
        own = tok[:, cand]  # (B, G, C) the cell's own token of each candidate, -1 where its value is 0
        tokens = torch.where(own >= 0, own, cand)
        valid = (self.cand >= 0).unsqueeze(1).expand(B, G, H, C).reshape(B * G * H, C)
        ids = torch.cat([self.peak_index, self.peak_index[uz]])
        vals = torch.cat([xv.new_zeros(P), xv[bz, uz]]).unsqueeze(-1)
        peaks = self.peak_value(vals) + self.peak_id(ids) + self.peak_type  # (P'+Z, d)
        plan = dict(pattern=head_pattern(tokens.view(B * G, C), P + bz.numel(), H), valid=valid,
                    has_cand=(self.cand >= 0).any(1))
        return self.drop(peaks), plan

    def forward(self, gene_values, peak_values=None, hidden=None, targets=None):
        """(B, G), (B, P), (B, G) bool, (B, G) counts -> ((B, G, d) gene states, NB loss | None)."""
        B, G = gene_values.shape
        assert G == self.config.n_genes, f"gene_values has {G} genes, model expects {self.config.n_genes}"
        e = self.embed_genes(gene_values, hidden)  # (B, G, d)
        shared = (gene_values == 0) if hidden is None else (gene_values == 0) & ~hidden  # state == base
        base = self.embed_genes(gene_values.new_zeros(1, G))[0]  # (G, d) the zero-value state
        nbr = knn_indices(e, self.config.k_neighbors, base, shared)  # (B, G, k), once, reused by every block
        neighbours = neighbour_pattern(nbr, self.config.n_heads)
        x, peaks, plan = self.drop(e), None, None
        if self.config.use_atac:
            assert peak_values is not None and peak_values.shape[1] == self.config.n_peaks, "peak_values must be (B, n_peaks)"
            peaks, plan = self._peak_plan(peak_values)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x, peaks = checkpoint(block, x, neighbours, peaks, plan, use_reentrant=False)
            else:
                x, peaks = block(x, neighbours, peaks, plan)
        loss = None
        if targets is not None:
            if hidden is None:
                raise ValueError("targets were given without `hidden`; pass the (B, G) bool of hidden genes")
            loss = self.masked_nb_loss(x, targets, hidden)
        return x, loss

    def nb_params(self, x, targets, hidden):
        """NB (log mean, inverse dispersion) for every gene; size factor from visible targets only."""
        seen = (~hidden).float()
        size = (targets.float() * seen).sum(1) / seen.sum(1).clamp_min(1)  # (B,) mean count per visible gene
        raw = self.decoder(x)  # (B, G, 2)
        raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
        log_mu = raw[..., 0] + torch.log(size.clamp_min(1e-3)).unsqueeze(1)
        return log_mu, F.softplus(raw[..., 1]) + 1e-4

    def masked_nb_loss(self, x, targets, hidden):
        """Mean NB NLL over the hidden genes."""
        log_mu, theta = self.nb_params(x, targets, hidden)
        nll = nb_nll(targets.float(), log_mu, theta)
        return (nll * hidden).sum() / hidden.sum().clamp_min(1)
