"""Dense multi-head attention over padded token sets, through `F.scaled_dot_product_attention`.

Masks say which keys a query *may attend* (True = attend), the convention of SDPA's boolean
`attn_mask`. A query with no key to attend (a fully padded row) gets a zero output, never NaN.
With a mask, SDPA runs its memory-efficient kernel on a GPU (no flash kernel takes masks), a fused
one on CPU.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, may_attend: torch.Tensor | None = None,
           dropout: float = 0.0) -> torch.Tensor:
    """(B, H, Lq, hd) queries over (B, H, Lk, hd) keys and values -> (B, H, Lq, hd).

    ``may_attend``: (B, Lk) key padding or (B, Lq, Lk) per pair, True where the query may attend.
    Rows with no key allowed output zeros.
    """
    if may_attend is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
    mask = _per_pair(may_attend)  # (B, 1, Lq or 1, Lk)
    has_key = mask.any(-1, keepdim=True)  # (B, 1, Lq or 1, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key, dropout_p=dropout)
    return out * has_key.to(out.dtype)


def attention_weights(q: torch.Tensor, k: torch.Tensor, may_attend: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, Lq, Lk) softmax weights of :func:`attend` (what the model computes, for reading links)."""
    logits = (q @ k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)  # in place: these are big
    if may_attend is None:
        return logits.softmax(-1)
    mask = _per_pair(may_attend)
    weights = logits.masked_fill_(~mask, float("-inf")).softmax(-1)
    return weights if mask.any(-1).all() else weights.nan_to_num_(0.0)  # rows without keys


def _per_pair(may_attend: torch.Tensor) -> torch.Tensor:
    if may_attend.dtype != torch.bool:
        raise TypeError(f"may_attend must be a bool tensor (True = may attend), got {may_attend.dtype}")
    return may_attend[:, None, None, :] if may_attend.ndim == 2 else may_attend[:, None]


class MultiHeadAttention(nn.Module):
    """Self-attention (``context=None``) or cross-attention of ``x`` over ``context``.

    ``head_dim`` may differ from ``d_model / n_heads`` (Cisformer: d=210, 6 heads of 128). No dropout
    on the attention weights: on CPU it sends SDPA down its materializing path with a serial
    Bernoulli draw over every (query, key) pair, ten times the rest of a training step (measured on
    ATAC→RNA, 818 gene queries); regularize the residual branches instead.
    """

    def __init__(self, d_model: int, n_heads: int, head_dim: int | None = None):
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = head_dim or d_model // n_heads
        inner = n_heads * self.head_dim
        self.q = nn.Linear(d_model, inner)
        self.kv = nn.Linear(d_model, 2 * inner)
        self.proj = nn.Linear(inner, d_model)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, L, _ = t.shape
        return t.view(B, L, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, hd)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                may_attend: torch.Tensor | None = None, need_weights: bool = False):
        """(B, Lq, d), (B, Lk, d) -> (B, Lq, d); with ``need_weights`` also the (B, H, Lq, Lk) weights."""
        context = x if context is None else context
        q = self._heads(self.q(x))
        k, v = (self._heads(t) for t in self.kv(context).chunk(2, dim=-1))
        y = attend(q, k, v, may_attend)
        y = self.proj(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
        if need_weights:
            return y, attention_weights(q, k, may_attend)
        return y

    def weights(self, x: torch.Tensor, context: torch.Tensor | None = None,
                may_attend: torch.Tensor | None = None) -> torch.Tensor:
        """The (B, H, Lq, Lk) weights of `forward` alone (no values, no output)."""
        context = x if context is None else context
        inner = self.n_heads * self.head_dim
        q = self._heads(self.q(x))
        k = self._heads(F.linear(context, self.kv.weight[:inner], self.kv.bias[:inner]))  # the key half of `kv`
        return attention_weights(q, k, may_attend)
