"""Sparse attention as sparse matrix products: R queries, each scoring M keys of a T-row table.

Logits are a sampled dense-dense product at the pattern (SDDMM), outputs a sparse x dense product
(SpMM); torch's CSR kernels (MKL on CPU, cuSPARSE on CUDA) read key and value rows in place, so
nothing of size R * M * d is ever materialised. Heads are folded into rows and columns, query
(n, h) x key (t, h): one pattern serves every head in one call. The kernels take fp32/fp64 only.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

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


def neighbour_pattern(nbr: torch.Tensor, n_heads: int) -> Pattern:
    """(B, G, k) neighbour indices within each cell -> pattern of rows (b, g, h) over columns (b, g', h)."""
    B, G, k = nbr.shape
    rows = nbr + torch.arange(B, device=nbr.device).view(B, 1, 1) * G
    return head_pattern(rows.view(B * G, k), B * G, n_heads)
