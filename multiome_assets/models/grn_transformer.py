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
  `gather_sum` gather in chunks inside custom autograd functions and re-gather in backward.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

_CHUNK_ELEMS = 1 << 22  # ~16 MB of fp32 gathered rows per chunk


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
def _steps(n: int, row_elems: int):
    step = max(1, _CHUNK_ELEMS // max(1, row_elems))
    return [(i, min(n, i + step)) for i in range(0, n, step)]


class _GatherDot(torch.autograd.Function):
    """out[n, m, s, h] = <a[rows[n], s, h], table[idx[n, m], h]> (rows=None: a[n])."""

    @staticmethod
    def forward(ctx, a, table, idx, rows):
        N, M = idx.shape
        S, H, hd = a.shape[1:]
        out = a.new_empty(N, M, S, H)
        for i, j in _steps(N, M * H * hd):
            ai = a[i:j] if rows is None else a[rows[i:j]]  # (n, S, H, hd)
            out[i:j] = torch.einsum("nshd,nmhd->nmsh", ai, table[idx[i:j]])
        ctx.save_for_backward(a, table, idx, rows)
        return out

    @staticmethod
    def backward(ctx, g):
        a, table, idx, rows = ctx.saved_tensors
        ga = torch.zeros_like(a) if ctx.needs_input_grad[0] else None
        gt = torch.zeros_like(table) if ctx.needs_input_grad[1] else None
        H, hd = table.shape[1:]
        g = g.to(a.dtype)
        for i, j in _steps(idx.shape[0], idx.shape[1] * H * hd):
            ti, gi = table[idx[i:j]], g[i:j]  # (n, M, H, hd), (n, M, S, H)
            if ga is not None:
                d = torch.einsum("nmsh,nmhd->nshd", gi, ti)
                if rows is None:
                    ga[i:j] = d
                else:
                    ga.index_add_(0, rows[i:j], d)
            if gt is not None:
                ai = a[i:j] if rows is None else a[rows[i:j]]
                gt.index_add_(0, idx[i:j].reshape(-1), torch.einsum("nmsh,nshd->nmhd", gi, ai).reshape(-1, H, hd))
        return ga, gt, None, None


class _GatherSum(torch.autograd.Function):
    """out[rows[n], s, h] += sum_m w[n, m, s, h] * table[idx[n, m], h] (rows=None: out[n])."""

    @staticmethod
    def forward(ctx, w, table, idx, rows, n_out):
        N, M, S, H = w.shape
        hd = table.shape[-1]
        out = (w.new_zeros if rows is not None else w.new_empty)(n_out, S, H, hd)
        for i, j in _steps(N, M * H * hd):
            d = torch.einsum("nmsh,nmhd->nshd", w[i:j], table[idx[i:j]])
            if rows is None:
                out[i:j] = d
            else:
                out.index_add_(0, rows[i:j], d)
        ctx.save_for_backward(w, table, idx, rows)
        return out

    @staticmethod
    def backward(ctx, g):
        w, table, idx, rows = ctx.saved_tensors
        gw = torch.empty_like(w) if ctx.needs_input_grad[0] else None
        gt = torch.zeros_like(table) if ctx.needs_input_grad[1] else None
        H, hd = table.shape[1:]
        g = g.to(w.dtype)
        for i, j in _steps(idx.shape[0], idx.shape[1] * H * hd):
            gi = g[i:j] if rows is None else g[rows[i:j]]  # (n, S, H, hd)
            if gw is not None:
                gw[i:j] = torch.einsum("nshd,nmhd->nmsh", gi, table[idx[i:j]])
            if gt is not None:
                gt.index_add_(0, idx[i:j].reshape(-1), torch.einsum("nmsh,nshd->nmhd", w[i:j], gi).reshape(-1, H, hd))
        return gw, gt, None, None, None


def _no_autocast(fn, *args):
    with torch.autocast(args[0].device.type, enabled=False):
        return fn(*args)


def gather_dot(a, table, idx, rows=None):
    """(N|Na, S, H, hd), (T, H, hd), (N, M) -> (N, M, S, H) dot products, never storing table[idx]."""
    return _no_autocast(_GatherDot.apply, a, table.to(a.dtype), idx, rows)


def gather_sum(w, table, idx, rows=None, n_out=None):
    """(N, M, S, H), (T, H, hd), (N, M) -> (n_out|N, S, H, hd) weighted sums of gathered rows."""
    return _no_autocast(_GatherSum.apply, w.to(table.dtype), table, idx, rows, n_out or idx.shape[0])


@torch.no_grad()
def knn_indices(states: torch.Tensor, k: int) -> torch.Tensor:
    """(B, G, d) -> (B, G, k) indices of each gene's k most cosine-similar other genes in its cell.

    Exact brute force in fp32, chunked over rows so the (rows, G) similarity block stays small.
    """
    B, G, _ = states.shape
    assert 0 < k < G, f"k_neighbors={k} must be in [1, n_genes - 1 = {G - 1}]"
    x = F.normalize(states.float(), dim=-1)
    out = torch.empty(B, G, k, dtype=torch.long, device=states.device)
    ar = torch.arange(G, device=states.device)
    for i, j in _steps(G, B * G):
        sims = torch.bmm(x[:, i:j], x.transpose(1, 2))  # (B, r, G)
        sims[:, ar[: j - i], ar[i:j]] = -float("inf")  # not yourself
        out[:, i:j] = sims.topk(k, dim=-1, sorted=False).indices
    return out


# ----------------------------------------------------------------------------- modules
class MLP(nn.Module):
    def __init__(self, config: GRNTransformerConfig):
        super().__init__()
        d = config.d_model
        self.fc = nn.Linear(d, config.ffn_mult * d)
        self.proj = nn.Linear(config.ffn_mult * d, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.proj(self.dropout(F.silu(self.fc(x))))


class GeneSelfAttention(nn.Module):
    """Multi-head attention of every gene over its k nearest genes (fixed per cell)."""

    def __init__(self, config: GRNTransformerConfig):
        super().__init__()
        self.n_heads, d = config.n_heads, config.d_model
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.attn_dropout = nn.Dropout(config.dropout)

    def forward(self, x, nbr):
        B, G, d = x.size()
        H = self.n_heads
        q, k, v = self.qkv(x).view(B * G, 3, H, d // H).unbind(1)  # (BG, H, hd) each
        idx = (nbr + torch.arange(B, device=x.device).view(B, 1, 1) * G).view(B * G, -1)  # (BG, k)
        att = gather_dot(q.unsqueeze(1) * (d // H) ** -0.5, k, idx)  # (BG, k, 1, H)
        att = self.attn_dropout(att.softmax(dim=1))
        y = gather_sum(att, v, idx)  # (BG, 1, H, hd)
        return self.proj(y.reshape(B, G, d))


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
        self.attn_dropout = nn.Dropout(config.dropout)

    def forward(self, x, peaks, plan):
        B, G, d = x.size()
        if peaks.shape[0] == 0:  # no gene has a candidate peak
            return torch.zeros_like(x)
        H, hd = self.n_heads, d // self.n_heads
        cand, valid = plan["cand"], plan["valid"]  # (G, C) long (pads clamped to 0), bool
        C, E = cand.shape[1], plan["e_flat"].numel()
        q = (self.q(x) * hd**-0.5).view(B, G, H, hd).transpose(0, 1).contiguous()  # (G, B, H, hd)
        k, v = self.kv(peaks).view(-1, 2, H, hd).unbind(1)  # (P'+Z, H, hd): zero tokens, then non-zero
        att = gather_dot(q, k, cand)  # (G, C, B, H), every cell against the shared zero tokens
        if E:  # (cell, gene, candidate) whose peak is non-zero in that cell use the cell's own token
            qr = q.view(G * B, 1, H, hd)
            nz = gather_dot(qr, k, plan["e_tok"][:, None], plan["e_row"]).view(E, H)
            att = att.view(-1, H).index_put((plan["e_flat"],), nz).view(G, C, B, H)
        att = att.float().masked_fill(~valid[:, :, None, None], -math.inf)
        att = att.masked_fill(~plan["has_cand"][:, None, None, None], 0.0)  # no NaN for empty genes
        if self.top_k < C:  # Top-K routing: softmax over the K largest logits only
            top, sel = att.topk(self.top_k, dim=1)  # (G, K, B, H)
            w = torch.zeros_like(att).scatter(1, sel, top.softmax(dim=1))
        else:
            w = att.softmax(dim=1)
        w = self.attn_dropout(w * valid[:, :, None, None])  # (G, C, B, H)
        if E:
            w_nz = w.view(-1, H)[plan["e_flat"]].view(E, 1, 1, H)
            w = w.view(-1, H).index_put((plan["e_flat"],), w.new_zeros(E, H)).view(G, C, B, H)
        y = gather_sum(w, v, cand)  # (G, B, H, hd)
        if E:
            y = y + gather_sum(w_nz, v, plan["e_tok"][:, None], plan["e_row"], G * B).view(G, B, H, hd)
        y = self.proj(y.transpose(0, 1).reshape(B, G, d))
        return y * plan["has_cand"].view(1, G, 1).to(y.dtype)


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
        self.dropout = nn.Dropout(config.dropout)

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
    def __init__(self, config: GRNTransformerConfig, candidates: torch.Tensor):
        super().__init__()
        self.config = c = config
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
        self.drop = nn.Dropout(c.dropout)
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
        ids = torch.cat([self.peak_index, self.peak_index[uz]])
        vals = torch.cat([xv.new_zeros(P), xv[bz, uz]]).unsqueeze(-1)
        peaks = self.peak_value(vals) + self.peak_id(ids) + self.peak_type  # (P'+Z, d)
        plan = dict(
            cand=self.cand.clamp(min=0), valid=valid, has_cand=valid.any(1),
            e_tok=ct[b_e, g_e, c_e], e_row=g_e * B + b_e, e_flat=(g_e * C + c_e) * B + b_e,
        )
        return self.drop(peaks), plan

    def forward(self, gene_values, peak_values=None, mask=None, targets=None):
        """(B, G), (B, P), (B, G) bool, (B, G) counts -> ((B, G, d) gene states, NB loss | None)."""
        B, G = gene_values.shape
        assert G == self.config.n_genes, f"gene_values has {G} genes, model expects {self.config.n_genes}"
        e = self.embed_genes(gene_values, mask)  # (B, G, d)
        nbr = knn_indices(e, self.config.k_neighbors)  # (B, G, k), once, reused by every block
        x, peaks, plan = self.drop(e), None, None
        if self.config.use_atac:
            assert peak_values is not None and peak_values.shape[1] == self.config.n_peaks, "peak_values must be (B, n_peaks)"
            peaks, plan = self._peak_plan(peak_values)
        for block in self.blocks:
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
        raw = self.decoder(x).float()  # (B, G, 2)
        log_mu = raw[..., 0] + torch.log(size.clamp_min(1e-3)).unsqueeze(1)
        return log_mu, F.softplus(raw[..., 1]) + 1e-4

    def masked_nb_loss(self, x, targets, mask):
        log_mu, theta = self.nb_params(x, targets, mask)
        nll = nb_nll(targets.float(), log_mu, theta)
        return (nll * mask).sum() / mask.sum().clamp_min(1)
