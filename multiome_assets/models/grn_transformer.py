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
- Both attentions are sparse matrix products (`Pattern`, `sampled_dot`, `weighted_sum`): keys and
  values are never materialised per (cell, gene, neighbour or candidate). Top-K routing selects
  without autograd, so backward only touches the K kept candidates.
- kNN (exact): genes with value 0 that are not masked share one state across cells, so their
  mutual similarities are computed once per batch (`knn_indices`).
- Optional block recomputation in backward (`grad_checkpointing`) trades ~1/4 more time for memory.
- On CPU, dropout masks come from 15-bit slices of 64-bit random draws (`_keep_mask`): the serial
  CPU generator otherwise costs more than the layers; p is rounded to a multiple of 1/32768.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


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


# ----------------------------------------------------------------------------- sparse attention
# Both attentions are sparse: R queries, each scoring M keys of a T-row table. Logits are a sampled
# dense-dense product at the pattern (SDDMM), outputs a sparse x dense product (SpMM); torch's CSR
# kernels (MKL on CPU, cuSPARSE on CUDA) read key and value rows in place, so nothing of size
# R * M * d is ever materialised. Heads are folded into rows and columns, query (n, h) x key (t, h):
# one pattern serves every head in one call. The kernels take fp32/fp64 only.
_INDEX = torch.int32  # CSR index dtype: MKL's int32 kernels are faster, and sorting int32 is too
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


class Pattern:
    """An (R, n_cols) sparsity pattern with M entries per row, columns ``cols`` (R, M), as CSR.
    Values are (R, M) tensors in the order of ``cols``. The transpose, needed for gradients w.r.t.
    keys and values, is built on first use and kept (a pattern is shared by every layer)."""

    def __init__(self, cols: torch.Tensor, n_cols: int):
        R, M = cols.shape
        assert R * M < 2**31 and n_cols < 2**31, f"pattern of {R} x {M} entries is too large for int32 indices"
        self.shape, self.M = (R, n_cols), M
        self.crow = torch.arange(0, R * M + 1, M, dtype=_INDEX, device=cols.device)
        self.col = cols.reshape(-1).to(_INDEX)
        self._transpose = None

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, values.reshape(-1), self.shape, check_invariants=False)

    def transposed(self, values: torch.Tensor) -> torch.Tensor:
        if self._transpose is None:
            col, order = torch.sort(self.col, stable=True)
            crow = F.pad(torch.bincount(col, minlength=self.shape[1]).cumsum(0), (1, 0)).to(_INDEX)
            self._transpose = crow, (order // self.M).to(_INDEX), order
        crow, row, order = self._transpose
        return torch.sparse_csr_tensor(crow, row, values.reshape(-1)[order], self.shape[::-1], check_invariants=False)

    def sample(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(R, d), (n_cols, d) -> (R, M) dot products <a[r], b[cols[r, m]]>."""
        empty = self.matrix(a.new_zeros(self.col.numel()))
        return torch.sparse.sampled_addmm(empty, a, b.T, beta=0.0).values().view(-1, self.M)


class _SampledDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, pattern):
        ctx.save_for_backward(q, k)
        ctx.pattern = pattern
        return pattern.sample(q, k)

    @staticmethod
    def backward(ctx, g):
        q, k = ctx.saved_tensors
        gq = ctx.pattern.matrix(g) @ k if ctx.needs_input_grad[0] else None
        gk = ctx.pattern.transposed(g) @ q if ctx.needs_input_grad[1] else None
        return gq, gk, None


class _WeightedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, v, pattern):
        ctx.save_for_backward(w, v)
        ctx.pattern = pattern
        return pattern.matrix(w) @ v

    @staticmethod
    def backward(ctx, g):
        w, v = ctx.saved_tensors
        g = g.contiguous()
        gw = ctx.pattern.sample(g, v) if ctx.needs_input_grad[0] else None
        gv = ctx.pattern.transposed(w) @ g if ctx.needs_input_grad[1] else None
        return gw, gv, None


def sampled_dot(q: torch.Tensor, k: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """(R, d) queries, (T, d) keys -> (R, M) logits <q[r], k[cols[r, m]]>."""
    return _SampledDot.apply(q.contiguous(), k.contiguous(), pattern)


def weighted_sum(w: torch.Tensor, v: torch.Tensor, pattern: Pattern) -> torch.Tensor:
    """(R, M) weights, (T, d) values -> (R, d) rows sum_m w[r, m] * v[cols[r, m]]."""
    return _WeightedSum.apply(w.contiguous(), v.contiguous(), pattern)


def head_pattern(cols: torch.Tensor, n_cols: int, n_heads: int) -> Pattern:
    """(N, M) columns shared by every head -> the pattern of rows (n, h) over columns (t, h): a
    (N, H * hd) query tensor and a (T, H * hd) table are then plain (N * H, hd) and (T * H, hd) views."""
    heads = torch.arange(n_heads, device=cols.device).view(1, -1, 1)
    return Pattern((cols.unsqueeze(1) * n_heads + heads).reshape(-1, cols.shape[1]), n_cols * n_heads)


def by_head(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(N, H * hd) -> (N * H, hd) rows (n, h), at least fp32 (what the CSR kernels take)."""
    t = t.reshape(t.shape[0] * n_heads, -1)
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


_KNN_ELEMS = 1 << 23  # similarity block per chunk in knn_indices


def _steps(n: int, row_elems: int):
    step = max(1, _KNN_ELEMS // max(1, row_elems))  # the global read per call: tests shrink it
    return [(i, min(n, i + step)) for i in range(0, n, step)]


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
        for i, j in _steps(G, B * G):
            sims = torch.bmm(x[:, i:j], x.transpose(1, 2))  # (B, r, G)
            sims[:, ar[: j - i], ar[i:j]] = -inf  # not yourself
            out[:, i:j] = sims.topk(k, dim=-1, sorted=False).indices
        return out
    xb = F.normalize(base.float(), dim=-1)  # (G, d)
    x = torch.where(shared[..., None], xb, x)
    T = min(G - 1, k + math.ceil(k * G / (G - Cm)))  # ~k shared candidates survive the changed ones
    vals0, idx0 = xb.new_empty(G, T), torch.empty(G, T, dtype=torch.long, device=dev)
    for i, j in _steps(G, G):  # shared x shared, once per batch
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
    for i, j in _steps(G, B * (T + Cm)):  # shared rows: shared top-T + changed columns
        to_shared = vals0[i:j].expand(B, -1, -1).masked_fill(changed[:, idx0[i:j]], -inf)  # (B, r, T)
        to_chg = torch.bmm(x[:, i:j], xc.transpose(1, 2)).masked_fill_(~chg_ok[:, None], -inf)  # (B, r, Cm)
        vc, pc = to_chg.topk(kc, dim=-1, sorted=False)  # (changed rows are redone below)
        v, pos = torch.cat([to_shared, vc], dim=2).topk(k, dim=-1, sorted=False)  # (B, r, k)
        from_shared = idx0[i:j].expand(B, -1, -1).gather(2, pos.clamp(max=T - 1))
        from_chg = chg[:, None].expand(-1, j - i, -1).gather(2, pc.gather(2, (pos - T).clamp(min=0)))
        out[:, i:j] = torch.where(pos < T, from_shared, from_chg)
        exact[:, i:j] = v.min(-1).values >= vals0[i:j, -1]
    sink = torch.where(chg_ok, chg, G)
    for i, j in _steps(Cm, B * G):  # changed rows: every column
        sims = torch.bmm(xc[:, i:j], x.transpose(1, 2))  # (B, r, G)
        sims.scatter_(2, chg[:, i:j, None], -inf)
        out.scatter_(1, sink[:, i:j, None].expand(-1, -1, k), sims.topk(k, dim=-1, sorted=False).indices)
    fb, fg = (~exact & shared).nonzero(as_tuple=True)  # rare: too many of the shared top T changed
    for i, j in _steps(len(fb), G + Cm * d):
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

    def forward(self, x, neighbours: Pattern):
        """(B, G, d), `neighbour_pattern` of the cells' kNN graph -> (B, G, d)."""
        B, G, d = x.size()
        H, hd = self.n_heads, d // self.n_heads
        q, k, v = self.qkv(x).view(B * G, 3 * d).split(d, dim=1)
        with torch.autocast(x.device.type, enabled=False):
            logits = sampled_dot(by_head(q, H) * hd**-0.5, by_head(k, H), neighbours)  # (B*G*H, k)
            y = weighted_sum(self.attn_dropout(logits.softmax(dim=-1)), by_head(v, H), neighbours)
        return self.proj(y.view(B, G, d))


def neighbour_pattern(nbr: torch.Tensor, n_heads: int) -> Pattern:
    """(B, G, k) neighbour indices within each cell -> pattern of rows (b, g, h) over columns (b, g', h)."""
    B, G, k = nbr.shape
    rows = nbr + torch.arange(B, device=nbr.device).view(B, 1, 1) * G
    return head_pattern(rows.view(B * G, k), B * G, n_heads)


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
        self.mlp, self.ln_3 = MLP(config), nn.LayerNorm(d)
        self.peak_mlp = MLP(config) if update_peaks else None
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

    def forward(self, gene_values, peak_values=None, mask=None, targets=None):
        """(B, G), (B, P), (B, G) bool, (B, G) counts -> ((B, G, d) gene states, NB loss | None)."""
        B, G = gene_values.shape
        assert G == self.config.n_genes, f"gene_values has {G} genes, model expects {self.config.n_genes}"
        e = self.embed_genes(gene_values, mask)  # (B, G, d)
        shared = (gene_values == 0) if mask is None else (gene_values == 0) & ~mask  # state == base
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
