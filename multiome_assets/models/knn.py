"""Exact k-nearest-neighbour graphs of gene states within each cell (cosine similarity)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
