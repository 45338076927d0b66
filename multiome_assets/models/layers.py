"""Small layers shared by the models: a dropout with cheap CPU masks, a feed-forward block."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


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
        # The mask as x's dtype: multiplying by a bool tensor (dtype promotion) took 40% of the layer.
        if x.dtype == torch.float32:  # the rescale folded into the mask: the same bits, one pass less
            return torch.mul(x, keep.to(x.dtype).mul_(scale))
        return torch.mul(x, keep.to(x.dtype)).mul_(scale)  # scale rounded to bf16 would change the bits


class FeedForward(nn.Module):
    """Linear(d, mult * d) -> SiLU -> Dropout -> Linear(mult * d, d)."""

    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(d, mult * d)
        self.proj = nn.Linear(mult * d, d)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        return self.proj(self.dropout(F.silu(self.fc(x))))
