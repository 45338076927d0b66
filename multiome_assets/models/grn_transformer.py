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
- Candidate keys/values are never materialised per (cell, gene, candidate): `gather_dot` and
  `gather_sum` gather in chunks inside custom autograd functions and re-gather in backward; the
  kNN attention is one fused function of the same kind.
- kNN (exact): genes with value 0 that are not masked share one state across cells, so their
  mutual similarities are computed once per batch (`knn_indices`).
- Optional block recomputation in backward (`grad_checkpointing`) trades ~1/4 more time for memory.
- On CPU, dropout masks come from 15-bit slices of 64-bit random draws (`_keep_mask`): the serial
  CPU generator otherwise costs more than the layers; p is rounded to a multiple of 1/32768.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

_CHUNK_ELEMS = 1 << 21  # gathered table elements per chunk (8 MB fp32): fewer, larger ops than 1 MB (step -11% at d=256)


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


# ----------------------------------------------------------------------------- sparse primitives
# Rows of a (T, H, hd) table are gathered chunk by chunk as tc (n, M, H, hd) and contracted right
# away; backward re-gathers instead of keeping N*M*d floats alive. S = cells sharing one index row.
def _steps(n: int, row_elems: int, budget: int | None = None):
    step = max(1, (budget or _CHUNK_ELEMS) // max(1, row_elems))  # the global read per call: tests shrink it
    return [(i, min(n, i + step)) for i in range(0, n, step)]


def _contract_d(x, tc):  # (n, H, S, hd), (n, M, H, hd) -> (n, H, S, M)
    if x.shape[2] == 1:  # elementwise beats n*H tiny matmuls
        return (tc * x.transpose(1, 2)).sum(-1).transpose(1, 2).unsqueeze(2)
    return x @ tc.permute(0, 2, 3, 1)


def _contract_m(y, tc):  # (n, H, S, M), (n, M, H, hd) -> (n, H, S, hd)
    if y.shape[2] == 1:
        return (y.squeeze(2).transpose(1, 2).unsqueeze(-1) * tc).sum(1).unsqueeze(2)
    return y @ tc.transpose(1, 2)


def _outer(y, x):  # (n, H, S, M), (n, H, S, hd) -> (n, M, H, hd), summed over S
    if y.shape[2] == 1:
        return y.squeeze(2).transpose(1, 2).unsqueeze(-1) * x.transpose(1, 2)
    return (y.transpose(-1, -2) @ x).transpose(1, 2)


def _add_rows(dst, rows, src):
    """dst[rows[i]] += src[i] over the first dim."""
    dst.index_add_(0, rows, src.reshape(rows.numel(), *dst.shape[1:]))


class _Gather(torch.autograd.Function):
    """dot: out[n, h, s, m] = <x[r(n), h, s], table[idx[n, m], h]>;
    sum: out[r(n), h, s] += sum_m x[n, h, s, m] * table[idx[n, m], h]; r(n) = rows[n] or n."""

    @staticmethod
    def forward(ctx, x, table, idx, rows, n_out, dot):
        (N, M), (T, H, hd) = idx.shape, table.shape
        flat = table.view(T, H * hd)
        S = x.shape[2]
        if dot:
            out = x.new_empty(N, H, S, M)
        else:
            out = (x.new_zeros if rows is not None else x.new_empty)(n_out, H, S, hd)
        for i, j in _steps(N, M * H * hd):
            tc = flat.index_select(0, idx[i:j].reshape(-1)).view(j - i, M, H, hd)
            if dot:
                out[i:j] = _contract_d(x[i:j] if rows is None else x[rows[i:j]], tc)
            elif rows is None:
                out[i:j] = _contract_m(x[i:j], tc)
            else:
                _add_rows(out, rows[i:j], _contract_m(x[i:j], tc))
        ctx.save_for_backward(x, table, idx, rows)
        ctx.dot = dot
        return out

    @staticmethod
    def backward(ctx, g):
        x, table, idx, rows = ctx.saved_tensors
        (N, M), (T, H, hd) = idx.shape, table.shape
        g, flat = g.to(x.dtype), table.view(T, H * hd)
        gx = x.new_zeros(x.shape) if ctx.needs_input_grad[0] else None
        gt = flat.new_zeros(flat.shape) if ctx.needs_input_grad[1] else None
        for i, j in _steps(N, M * H * hd):
            tc = flat.index_select(0, idx[i:j].reshape(-1)).view(j - i, M, H, hd)
            if ctx.dot:  # x is the query side, g is (N, H, S, M)
                xi, gi = (x[i:j] if rows is None else x[rows[i:j]]), g[i:j]
                if gx is not None:
                    if rows is None:
                        gx[i:j] = _contract_m(gi, tc)
                    else:
                        _add_rows(gx, rows[i:j], _contract_m(gi, tc))
                gtc = None if gt is None else _outer(gi, xi)
            else:  # x is the weights, g is (n_out, H, S, hd)
                xi, gi = x[i:j], (g[i:j] if rows is None else g[rows[i:j]])
                if gx is not None:
                    gx[i:j] = _contract_d(gi, tc)
                gtc = None if gt is None else _outer(xi, gi)
            if gtc is not None:
                _add_rows(gt, idx[i:j].reshape(-1), gtc)
        return gx, None if gt is None else gt.view(T, H, hd), None, None, None, None


class _NeighbourAttention(torch.autograd.Function):
    """y[n] = sum_m drop(softmax_m(<q[n], k[idx[n, m]]>))[m] * v[idx[n, m]], per head, fused per chunk:
    keys and values are gathered once per chunk in forward and once in backward."""

    @staticmethod
    def forward(ctx, q, kv, idx, p_drop):
        (N, M), (_, _, H, hd) = idx.shape, kv.shape
        flat = kv.view(kv.shape[0], -1)
        y = q.new_empty(N, H, hd)
        probs = q.new_empty(N, M, H)
        keep, scale = _keep_mask((N, M, H), p_drop, q.device) if p_drop > 0 else (None, 1.0)
        for i, j in _steps(N, M * 2 * H * hd):
            kvc = flat.index_select(0, idx[i:j].reshape(-1)).view(j - i, M, 2, H, hd)
            p = (kvc[:, :, 0] * q[i:j, None]).sum(-1).softmax(dim=1)  # (n, M, H)
            probs[i:j] = p
            if keep is not None:
                p = p * keep[i:j] * scale
            y[i:j] = (p.unsqueeze(-1) * kvc[:, :, 1]).sum(1)
        ctx.save_for_backward(q, kv, idx, probs, keep)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, gy):
        q, kv, idx, probs, keep = ctx.saved_tensors
        (N, M), (_, _, H, hd) = idx.shape, kv.shape
        flat, gy = kv.view(kv.shape[0], -1), gy.to(q.dtype)
        gq, gkv = q.new_empty(q.shape), flat.new_zeros(flat.shape)
        for i, j in _steps(N, M * 2 * H * hd):
            kvc = flat.index_select(0, idx[i:j].reshape(-1)).view(j - i, M, 2, H, hd)
            p, g = probs[i:j], gy[i:j, None]  # (n, M, H), (n, 1, H, hd)
            pd = p if keep is None else p * keep[i:j] * ctx.scale
            dp = (g * kvc[:, :, 1]).sum(-1)  # (n, M, H)
            if keep is not None:
                dp = dp * keep[i:j] * ctx.scale
            dlogit = p * (dp - (p * dp).sum(1, keepdim=True))
            gq[i:j] = (dlogit.unsqueeze(-1) * kvc[:, :, 0]).sum(1)
            rows = torch.stack([dlogit.unsqueeze(-1) * q[i:j, None], pd.unsqueeze(-1) * g], dim=2)  # (n, M, 2, H, hd)
            _add_rows(gkv, idx[i:j].reshape(-1), rows)
        return gq, gkv.view(kv.shape), None, None


def _apply(x, table, idx, rows, n_out, dot):
    with torch.autocast(x.device.type, enabled=False):
        return _Gather.apply(x, table.contiguous(), idx, rows, n_out, dot)


def gather_dot(a, table, idx, rows=None):
    """(Na, H, S, hd), (T, H, hd), (N, M) -> (N, H, S, M) dot products; table[idx] is never stored."""
    return _apply(a, table.to(a.dtype), idx, rows, None, True)


def gather_sum(w, table, idx, rows=None, n_out=None):
    """(N, H, S, M), (T, H, hd), (N, M) -> (n_out | N, H, S, hd) weighted sums of gathered rows."""
    return _apply(w.to(table.dtype), table, idx, rows, n_out or idx.shape[0], False)


_KNN_ELEMS = 1 << 23  # similarity block per chunk


@torch.no_grad()
def knn_indices(states: torch.Tensor, k: int, base: torch.Tensor | None = None, shared: torch.Tensor | None = None):
    """(B, G, d) -> (B, G, k) indices of each gene's k most cosine-similar other genes in its cell.

    Exact (ties aside), fp32. Optional ``base`` (G, d) and ``shared`` (B, G) bool: genes whose state
    is exactly ``base[g]`` (value 0 and not masked: most genes of a sparse cell). Similarities among
    shared genes are then computed once per batch, keeping each gene's top T; per cell only the
    rows and columns of its other ("changed") genes are computed. A shared row's answer is exact
    when its k-th best is at least its T-th shared similarity (nothing dropped can beat it); rows
    failing that are recomputed in full.
    """
    B, G, d = states.shape
    assert 0 < k < G, f"k_neighbors={k} must be in [1, n_genes - 1 = {G - 1}]"
    dev, inf = states.device, float("inf")
    x = F.normalize(states.float(), dim=-1)
    ar = torch.arange(G, device=dev)
    changed = None if shared is None else ~shared
    Cm = G if changed is None else int(changed.sum(1).max())
    if base is None or 2 * Cm > G or Cm == 0:  # brute force
        out = torch.empty(B, G, k, dtype=torch.long, device=dev)
        for i, j in _steps(G, B * G, _KNN_ELEMS):
            sims = torch.bmm(x[:, i:j], x.transpose(1, 2))  # (B, r, G)
            sims[:, ar[: j - i], ar[i:j]] = -inf  # not yourself
            out[:, i:j] = sims.topk(k, dim=-1, sorted=False).indices
        return out
    xb = F.normalize(base.float(), dim=-1)  # (G, d)
    x = torch.where(shared[..., None], xb, x)
    T = min(G - 1, k + math.ceil(k * G / (G - Cm)))  # ~k shared candidates survive the changed ones
    vals0, idx0 = xb.new_empty(G, T), torch.empty(G, T, dtype=torch.long, device=dev)
    for i, j in _steps(G, G, _KNN_ELEMS):  # shared x shared, once per batch
        sims = xb[i:j] @ xb.T
        sims[ar[: j - i], ar[i:j]] = -inf
        vals0[i:j], idx0[i:j] = sims.topk(T, dim=-1)  # sorted: vals0[:, -1] bounds what was dropped
    order = torch.argsort(changed.to(torch.int8), dim=1, descending=True, stable=True)
    chg = order[:, :Cm]  # (B, Cm) changed genes first
    chg_ok = ar[:Cm] < changed.sum(1, keepdim=True)  # (B, Cm) real entries, not padding
    xc = x.gather(1, chg[..., None].expand(B, Cm, d))  # (B, Cm, d)
    out = torch.empty(B, G + 1, k, dtype=torch.long, device=dev)  # row G: sink for padding
    exact = torch.empty(B, G, dtype=torch.bool, device=dev)
    kc = min(k, Cm)
    for i, j in _steps(G, B * (T + Cm), _KNN_ELEMS):  # shared rows: shared top-T + changed columns
        to_shared = vals0[i:j].expand(B, -1, -1).masked_fill(changed[:, idx0[i:j]], -inf)  # (B, r, T)
        to_chg = torch.bmm(x[:, i:j], xc.transpose(1, 2)).masked_fill_(~chg_ok[:, None], -inf)  # (B, r, Cm)
        vc, pc = to_chg.topk(kc, dim=-1, sorted=False)  # (changed rows are redone below)
        v, pos = torch.cat([to_shared, vc], dim=2).topk(k, dim=-1, sorted=False)  # (B, r, k)
        from_shared = idx0[i:j].expand(B, -1, -1).gather(2, pos.clamp(max=T - 1))
        from_chg = chg[:, None].expand(-1, j - i, -1).gather(2, pc.gather(2, (pos - T).clamp(min=0)))
        out[:, i:j] = torch.where(pos < T, from_shared, from_chg)
        exact[:, i:j] = v.min(-1).values >= vals0[i:j, -1]
    sink = torch.where(chg_ok, chg, G)
    for i, j in _steps(Cm, B * G, _KNN_ELEMS):  # changed rows: every column
        sims = torch.bmm(xc[:, i:j], x.transpose(1, 2))  # (B, r, G)
        sims.scatter_(2, chg[:, i:j, None], -inf)
        out.scatter_(1, sink[:, i:j, None].expand(-1, -1, k), sims.topk(k, dim=-1, sorted=False).indices)
    fb, fg = (~exact & shared).nonzero(as_tuple=True)  # rare: too many of the shared top T changed
    for i, j in _steps(len(fb), G + Cm * d, _KNN_ELEMS):
        b, g = fb[i:j], fg[i:j]
        sims = F.pad(xb[g] @ xb.T, (0, 1))  # (F, G + 1), exact for shared columns
        sims.scatter_(1, sink[b], torch.bmm(xc[b], xb[g, :, None]).squeeze(-1))  # changed columns
        sims[:, G] = -inf
        sims[torch.arange(j - i, device=dev), g] = -inf
        out[b, g] = sims.topk(k, dim=-1, sorted=False).indices
    return out[:, :G]


# ----------------------------------------------------------------------------- modules
def _keep_mask(shape, p: float, device) -> tuple[torch.Tensor, float]:
    """Dropout keep-mask and its rescale factor. On CPU from 15-bit slices of 64-bit random draws:
    4x fewer draws from the serial CPU generator, which otherwise costs more than the layer it
    regularizes; p is then rounded to a multiple of 1/32768 (the rescale keeps the mean exact)."""
    if device.type != "cpu":
        return torch.rand(shape, device=device) >= p, 1 / (1 - p)
    n, thr = math.prod(shape), round(p * 32768)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n]
    return ((bits & 0x7FFF) >= thr).view(shape), 32768 / (32768 - thr)


class Dropout(nn.Dropout):
    """nn.Dropout with the cheap CPU mask of `_keep_mask`."""

    def forward(self, x):
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep, scale = _keep_mask(x.shape, self.p, x.device)
        return torch.mul(x, keep).mul_(scale)


class MLP(nn.Module):
    def __init__(self, config: GRNTransformerConfig):
        super().__init__()
        d = config.d_model
        self.fc = nn.Linear(d, config.ffn_mult * d)
        self.proj = nn.Linear(config.ffn_mult * d, d)
        self.dropout = Dropout(config.dropout)

    def forward(self, x):
        return self.proj(self.dropout(F.silu(self.fc(x))))


class GeneSelfAttention(nn.Module):
    """Multi-head attention of every gene over its k nearest genes (fixed per cell)."""

    def __init__(self, config: GRNTransformerConfig):
        super().__init__()
        self.n_heads, d = config.n_heads, config.d_model
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.attn_dropout = Dropout(config.dropout)

    def forward(self, x, nbr):
        B, G, d = x.size()
        H, hd = self.n_heads, d // self.n_heads
        qkv = self.qkv(x).view(B * G, 3, H, hd)
        idx = (nbr + torch.arange(B, device=x.device).view(B, 1, 1) * G).view(B * G, -1)  # (BG, k)
        p_drop = self.attn_dropout.p if self.training else 0.0
        with torch.autocast(x.device.type, enabled=False):
            kv = qkv[:, 1:].contiguous()  # (BG, 2, H, hd)
            y = _NeighbourAttention.apply(qkv[:, 0] * hd**-0.5, kv, idx, p_drop)  # (BG, H, hd)
        return self.proj(y.view(B, G, d))


class CandidateCrossAttention(nn.Module):
    """Each gene attends to its candidate peaks, keeping the top_k logits per head (renormalized).

    Genes without candidates get exactly zero output.
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
        cand, valid, has = plan["cand"], plan["valid"], plan["has_cand"]  # (G, C) pads clamped to 0, (G, C), (G,)
        C, E = cand.shape[1], plan["e_tok"].numel()
        q = (self.q(x) * hd**-0.5).view(B, G, H, hd)
        k, v = self.kv(peaks).view(-1, 2, H, hd).unbind(1)  # (P'+Z, H, hd): shared zero tokens, then non-zero
        att = gather_dot(q.permute(1, 2, 0, 3).contiguous(), k, cand)  # (G, H, B, C) vs zero tokens
        if E:  # (cell, gene, candidate) whose peak is non-zero in that cell: the cell's own token
            nz = gather_dot(q.view(B * G, H, 1, hd), k, plan["e_tok"][:, None], plan["e_row"])  # (E, H, 1, 1)
            att.view(-1)[plan["e_flat"].view(-1)] = nz.view(-1)
        att = att.to(torch.promote_types(att.dtype, torch.float32)).masked_fill_(~valid[:, None, None, :], -math.inf)
        att.masked_fill_(~has[:, None, None, None], 0.0)  # no NaN for genes without candidates
        if self.top_k < C:  # Top-K routing: renormalized softmax over the K largest logits
            top, sel = att.topk(self.top_k, dim=-1)  # (G, H, B, K)
            w = torch.zeros_like(att).scatter(-1, sel, self.attn_dropout(top.softmax(dim=-1)))
        else:
            w = self.attn_dropout(att.softmax(dim=-1))
        w = w * valid[:, None, None, :]  # (G, H, B, C), zero on pads and for genes without candidates
        if E:
            flat = plan["e_flat"].view(-1)
            w_nz = w.view(-1)[flat].view(E, H, 1, 1)
            w.view(-1)[flat] = 0.0  # those weights go to the cells' own tokens below
        y = gather_sum(w, v, cand).permute(2, 0, 1, 3)  # (B, G, H, hd)
        if E:
            y = y + gather_sum(w_nz, v, plan["e_tok"][:, None], plan["e_row"], B * G).view(B, G, H, hd)
        y = self.proj(y.reshape(B, G, d))
        return y * has.view(1, G, 1).to(y.dtype)


class Block(nn.Module):
    def __init__(self, config: GRNTransformerConfig, update_peaks: bool):
        super().__init__()
        d, self.use_atac = config.d_model, config.use_atac
        self.attn, self.ln_1 = GeneSelfAttention(config), nn.LayerNorm(d)
        if config.use_atac:
            self.cross, self.ln_2 = CandidateCrossAttention(config), nn.LayerNorm(d)
        self.mlp, self.ln_3 = MLP(config), nn.LayerNorm(d)
        self.peak_mlp = MLP(config) if update_peaks else None
        self.ln_peak = nn.LayerNorm(d) if update_peaks else None
        self.dropout = Dropout(config.dropout)

    def forward(self, x, nbr, peaks=None, plan=None):
        x = self.ln_1(x + self.dropout(self.attn(x, nbr)))
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

    def embed_genes(self, gene_values, mask=None):
        """(B, G) values, (B, G) bool -> (B, G, d) initial states; masked values never enter."""
        x = gene_values.unsqueeze(-1)
        if mask is not None:
            x = x.masked_fill(mask.unsqueeze(-1), 0.0)
        v = self.gene_value(x)  # (B, G, d)
        if mask is not None:
            v = torch.where(mask.unsqueeze(-1), self.mask_token.to(v.dtype), v)
        return v + self.gene_id.weight + self.gene_type

    def _peak_plan(self, peak_values):
        """Peak tokens (P' shared zero tokens + Z non-zero (cell, peak) tokens) and index plan."""
        B, G, C = peak_values.shape[0], *self.cand.shape
        P = self.peak_index.numel()
        xv = peak_values[:, self.peak_index]  # (B, P')
        bz, uz = xv.nonzero(as_tuple=True)  # (Z,) each, row-major
        tok = torch.full((B, P), -1, dtype=torch.long, device=xv.device)
        tok[bz, uz] = torch.arange(bz.numel(), device=xv.device) + P
        valid = self.cand >= 0
        ct = tok[:, self.cand.clamp(min=0)].masked_fill(~valid, -1)  # (B, G, C) token of each candidate
        b_e, g_e, c_e = (ct >= 0).nonzero(as_tuple=True)  # (E,) each
        H = self.config.n_heads
        h = torch.arange(H, device=xv.device)
        ids = torch.cat([self.peak_index, self.peak_index[uz]])
        vals = torch.cat([xv.new_zeros(P), xv[bz, uz]]).unsqueeze(-1)
        peaks = self.peak_value(vals) + self.peak_id(ids) + self.peak_type  # (P'+Z, d)
        plan = dict(
            cand=self.cand.clamp(min=0), valid=valid, has_cand=valid.any(1),
            e_tok=ct[b_e, g_e, c_e], e_row=b_e * G + g_e,  # row of (B*G, ...) gene tensors
            e_flat=((g_e[:, None] * H + h) * B + b_e[:, None]) * C + c_e[:, None],  # (E, H) into (G, H, B, C)
        )
        return self.drop(peaks), plan

    def forward(self, gene_values, peak_values=None, mask=None, targets=None):
        """(B, G), (B, P), (B, G) bool, (B, G) counts -> ((B, G, d) gene states, NB loss | None)."""
        B, G = gene_values.shape
        assert G == self.config.n_genes, f"gene_values has {G} genes, model expects {self.config.n_genes}"
        e = self.embed_genes(gene_values, mask)  # (B, G, d)
        shared = (gene_values == 0) if mask is None else (gene_values == 0) & ~mask  # state == base
        base = self.embed_genes(gene_values.new_zeros(1, G))[0]  # (G, d) the zero-value state
        nbr = knn_indices(e, self.config.k_neighbors, base, shared)  # (B, G, k), once, reused by every block
        x, peaks, plan = self.drop(e), None, None
        if self.config.use_atac:
            assert peak_values is not None and peak_values.shape[1] == self.config.n_peaks, "peak_values must be (B, n_peaks)"
            peaks, plan = self._peak_plan(peak_values)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x, peaks = checkpoint(block, x, nbr, peaks, plan, use_reentrant=False)
            else:
                x, peaks = block(x, nbr, peaks, plan)
        loss = None
        if targets is not None:
            if mask is None:
                raise ValueError("targets were given without mask; pass the (B, G) bool mask of hidden genes")
            loss = self.masked_nb_loss(x, targets, mask)
        return x, loss

    def nb_params(self, x, targets, mask):
        """NB (log mean, inverse dispersion) for every gene; size factor from visible targets only."""
        seen = (~mask).float()
        size = (targets.float() * seen).sum(1) / seen.sum(1).clamp_min(1)  # (B,) mean count per visible gene
        raw = self.decoder(x)  # (B, G, 2)
        raw = raw.to(torch.promote_types(raw.dtype, torch.float32))
        log_mu = raw[..., 0] + torch.log(size.clamp_min(1e-3)).unsqueeze(1)
        return log_mu, F.softplus(raw[..., 1]) + 1e-4

    def masked_nb_loss(self, x, targets, mask):
        log_mu, theta = self.nb_params(x, targets, mask)
        nll = nb_nll(targets.float(), log_mu, theta)
        return (nll * mask).sum() / mask.sum().clamp_min(1)
