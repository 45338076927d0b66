"""EpiAwareNet Stage 1 backbone: masking, kNN graph, Top-K candidate attention, sparse primitives.

Naive references are written out densely here (every cell gets every peak token, every head is
computed on its own) so the model's shared tokens and sparse-matrix products are checked
against the plain definition.
"""
from __future__ import annotations

import math

import pytest
import torch

import multiome_assets.models.knn as knn
from multiome_assets.models.grn_transformer import GRNTransformer, GRNTransformerConfig
from multiome_assets.models.knn import knn_indices
from multiome_assets.models.sparse_attention import (
    Pattern,
    head_pattern,
    neighbour_pattern,
    sampled_dot,
    weighted_sum,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _candidates(G, P, C, seed=0, n_empty=3):
    """(G, C) random distinct peaks per gene, a ragged number per gene, the first n_empty genes with none."""
    g = torch.Generator().manual_seed(seed)
    cand = torch.argsort(torch.rand(G, P, generator=g), dim=1)[:, :C]
    n = torch.randint(1, C + 1, (G,), generator=g)
    n[:n_empty] = 0
    return cand.masked_fill(torch.arange(C) >= n[:, None], -1)


def _model(G=24, P=40, C=6, *, top_k=2, dropout=0.0, use_atac=True, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = GRNTransformerConfig(n_genes=G, n_peaks=P, d_model=16, n_layers=2, n_heads=4, dropout=dropout,
                               top_k=top_k, k_neighbors=4, max_candidates=C, use_atac=use_atac, **kw)
    return GRNTransformer(cfg, _candidates(G, P, C, seed)).eval()


def _inputs(B, G, P, seed=1):
    g = torch.Generator().manual_seed(seed)
    rna = torch.poisson(torch.rand(B, G, generator=g) * 3, generator=g)
    atac = (torch.rand(B, P, generator=g) < 0.3).float() * torch.rand(B, P, generator=g) * 2  # non-binary on purpose
    mask = torch.rand(B, G, generator=g) < 0.3
    return torch.log1p(rna), atac, mask, rna


def test_masked_values_never_reach_the_model():
    model = _model()
    x, atac, mask, counts = _inputs(3, 24, 40)
    states, loss = model(x, atac, mask, counts)
    changed = x.clone()
    changed[mask] = torch.rand(int(mask.sum())) * 100 + 5  # nothing like the truth
    states2, loss2 = model(changed, atac, mask, counts)
    assert torch.equal(states, states2)  # every gene, masked or not, incl. via the kNN graph
    assert torch.equal(loss, loss2)
    # an unmasked value does reach the model, and the loss scores the true masked counts
    visible = (~mask).nonzero()[0]
    bumped = x.clone()
    bumped[visible[0], visible[1]] += 3.0
    assert not torch.allclose(model(bumped, atac, mask, counts)[0], states)
    other_counts = counts.clone()
    other_counts[mask] += 7
    assert not torch.isclose(model(x, atac, mask, other_counts)[1], loss)


def _brute_knn(states, k):
    x = torch.nn.functional.normalize(states, dim=-1)
    sims = x @ x.transpose(1, 2)
    sims.diagonal(dim1=1, dim2=2).fill_(-math.inf)  # a gene is not its own neighbour
    return sims.topk(k, dim=-1).indices


@pytest.mark.parametrize("changed", [None, 0.05, 0.3, 0.8])
@pytest.mark.parametrize("chunk", [1 << 23, 300])
def test_knn_matches_brute_force_cosine_top_k(changed, chunk, monkeypatch):
    """Brute force, and the shared-state path (genes whose state is the zero-value state)."""
    monkeypatch.setattr(knn, "_KNN_ELEMS", chunk)  # one chunk, or many
    g = torch.Generator().manual_seed(0)
    base = torch.randn(120, 8, generator=g)
    if changed is None:
        states, shared = torch.randn(3, 120, 8, generator=g), None
    else:
        shared = torch.rand(3, 120, generator=g) >= changed
        states = torch.where(shared[..., None], base, torch.randn(3, 120, 8, generator=g))
    nbr = knn_indices(states, 5, None if shared is None else base, shared)
    assert torch.equal(nbr.sort(-1).values, _brute_knn(states, 5).sort(-1).values)


def test_knn_shared_path_recomputes_rows_whose_shared_neighbours_all_changed():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(100, 8, generator=g)
    near = _brute_knn(base[None], 12)[0, 0]  # gene 0's 12 nearest genes change in this cell
    shared = torch.ones(1, 100, dtype=torch.bool)
    shared[0, near] = False
    states = torch.where(shared[..., None], base, 5 * torch.randn(1, 100, 8, generator=g))
    nbr = knn_indices(states, 4, base, shared)
    assert torch.equal(nbr.sort(-1).values, _brute_knn(states, 4).sort(-1).values)


def _naive_cross(module, x, peak_tokens, cand, top_k):
    """Dense reference: every cell owns every peak token; softmax over each gene's K best candidates."""
    B, G, d = x.shape
    H = module.n_heads
    hd = d // H
    q = (module.q(x) * hd**-0.5).view(B, G, H, hd)
    k, v = module.kv(peak_tokens).view(B, -1, 2, H, hd).unbind(2)  # (B, P, H, hd)
    valid = cand >= 0
    idx = cand.clamp(min=0)
    kc, vc = k[:, idx], v[:, idx]  # (B, G, C, H, hd)
    logits = torch.einsum("bghd,bgchd->bgch", q, kc).masked_fill(~valid[None, :, :, None], -math.inf)
    kth = logits.topk(min(top_k, cand.shape[1]), dim=2).values[:, :, -1:]  # K-th largest per head
    logits = logits.masked_fill(logits < kth, -math.inf)
    w = torch.nan_to_num(logits.softmax(dim=2), nan=0.0)  # genes without candidates: no weight
    y = torch.einsum("bgch,bgchd->bghd", w, vc).reshape(B, G, d)
    return module.proj(y) * valid.any(1)[None, :, None]


@pytest.mark.parametrize("top_k", [2, 6, 50])
def test_top_k_cross_attention_matches_dense_masked_softmax(top_k):
    model = _model(C=6, top_k=top_k).double()
    _, atac, _, _ = _inputs(3, 24, 40)
    atac = atac.double()
    x = torch.randn(3, 24, 16, dtype=torch.double)
    peaks, plan = model._peak_plan(atac)
    out = model.blocks[0].cross(x, peaks, plan)
    dense_tokens = model.peak_value(atac.unsqueeze(-1)) + model.peak_id.weight + model.peak_type
    cand = model.peak_index[model.cand.clamp(min=0)].masked_fill(model.cand < 0, -1)  # original peak columns
    ref = _naive_cross(model.blocks[0].cross, x, dense_tokens, cand, top_k)
    assert torch.allclose(out, ref, atol=1e-10)


def test_cross_and_neighbour_attention_gradients():
    model = _model(G=10, P=16, C=4, top_k=2).double()
    _, atac, _, _ = _inputs(2, 10, 16)
    peaks, _ = model._peak_plan(atac.double())
    x = torch.randn(2, 10, 16, dtype=torch.double, requires_grad=True)
    peaks = peaks.detach().requires_grad_()
    own = atac[:, model.peak_index][:, model.cand.clamp(min=0)] > 0  # (B, G, C) candidates with the cell's own token
    assert own[:, model.cand >= 0].any()  # the per-cell non-zero token path is exercised
    fresh = lambda: model._peak_plan(atac.double())[1]  # noqa: E731  a plan per forward, as in the model
    assert torch.autograd.gradcheck(lambda x, p: model.blocks[0].cross(x, p, fresh()), (x, peaks))
    neighbours = neighbour_pattern(knn_indices(x.detach(), 4), 4)
    assert torch.autograd.gradcheck(lambda x: model.blocks[0].attn(x, neighbours), (x,))


def _naive_neighbour_attention(module, x, nbr):
    """Dense reference: per cell, gene and head, softmax over the k neighbours' logits."""
    B, G, d = x.shape
    H = module.n_heads
    q, k, v = module.qkv(x).view(B, G, 3, H, d // H).unbind(2)
    b = torch.arange(B).view(B, 1, 1)
    logits = torch.einsum("bghd,bgmhd->bgmh", q * (d // H) ** -0.5, k[b, nbr])
    y = torch.einsum("bgmh,bgmhd->bghd", logits.softmax(dim=2), v[b, nbr])
    return module.proj(y.reshape(B, G, d))


def test_neighbour_attention_matches_dense_reference():
    model = _model().double()
    x = torch.randn(3, 24, 16, dtype=torch.double)
    nbr = knn_indices(x, 4)
    out = model.blocks[0].attn(x, neighbour_pattern(nbr, 4))
    assert torch.allclose(out, _naive_neighbour_attention(model.blocks[0].attn, x, nbr), atol=1e-12)


def test_top_k_gives_weight_to_the_k_largest_logits_only():
    """With K=1 each head returns exactly the value of its best-scoring candidate."""
    model = _model(C=6, top_k=1).double()
    ca = model.blocks[0].cross
    _, atac, _, _ = _inputs(2, 24, 40)
    peaks, plan = model._peak_plan(atac.double())
    x = torch.randn(2, 24, 16, dtype=torch.double)
    seen = {}
    ca.proj.register_forward_hook(lambda m, inp, out: seen.update(ctx=inp[0]))
    ca(x, peaks, plan)
    dense = model.peak_value(atac.double().unsqueeze(-1)) + model.peak_id.weight + model.peak_type
    k, v = ca.kv(dense).view(2, 40, 2, 4, 4).unbind(2)
    q = (ca.q(x) * 0.5).view(2, 24, 4, 4)
    g, cand = 10, model.peak_index[model.cand[10][model.cand[10] >= 0]]
    for b in range(2):
        best = torch.einsum("hd,chd->ch", q[b, g], k[b, cand]).argmax(0)  # (H,)
        expected = v[b, cand[best], torch.arange(4)]  # (H, hd)
        assert torch.allclose(seen["ctx"][b, g].view(4, 4), expected)


def test_genes_without_candidates_get_zero_cross_attention():
    model = _model()
    _, atac, _, _ = _inputs(2, 24, 40)
    peaks, plan = model._peak_plan(atac)
    out = model.blocks[0].cross(torch.randn(2, 24, 16), peaks, plan)
    empty = (model.cand < 0).all(1)
    assert empty.sum() == 3
    assert torch.equal(out[:, empty], torch.zeros_like(out[:, empty]))
    assert (out[:, ~empty].abs().sum(-1) > 0).all()


def test_peaks_without_any_gene_get_no_token():
    model = _model()
    used = torch.unique(model.peak_index)
    assert len(used) == len(model.peak_index) < 40


def test_sparse_primitives_match_dense_and_gradcheck():
    """Repeated columns in a row, columns no row uses, and the transposed pattern of backward."""
    g = torch.Generator().manual_seed(0)
    R, M, T, hd = 7, 3, 9, 4
    q = torch.randn(R, hd, dtype=torch.double, generator=g, requires_grad=True)
    w = torch.randn(R, M, dtype=torch.double, generator=g, requires_grad=True)
    t = torch.randn(T, hd, dtype=torch.double, generator=g, requires_grad=True)
    cols = torch.randint(0, T - 2, (R, M), generator=g)
    cols[0, 1] = cols[0, 0]
    pattern = Pattern(cols, T)
    assert torch.equal(sampled_dot(q, t, pattern), torch.einsum("rd,rmd->rm", q, t[cols]))
    assert torch.allclose(weighted_sum(w, t, pattern), torch.einsum("rm,rmd->rd", w, t[cols]))
    assert torch.autograd.gradcheck(lambda q, t: sampled_dot(q, t, pattern), (q, t))
    assert torch.autograd.gradcheck(lambda w, t: weighted_sum(w, t, pattern), (w, t))


def test_head_pattern_keeps_each_head_to_its_own_slice():
    g = torch.Generator().manual_seed(0)
    N, M, T, H, hd = 5, 3, 6, 2, 4
    q, t = torch.randn(N, H * hd, generator=g), torch.randn(T, H * hd, generator=g)
    cols = torch.randint(0, T, (N, M), generator=g)
    logits = sampled_dot(q.view(N * H, hd), t.view(T * H, hd), head_pattern(cols, T, H)).view(N, H, M)
    expected = torch.einsum("nhd,nmhd->nhm", q.view(N, H, hd), t.view(T, H, hd)[cols])
    assert torch.allclose(logits, expected, atol=1e-6)


def test_neighbour_attention_gradcheck_with_dropout():
    model = _model(dropout=0.3).double().train()
    x = torch.randn(2, 24, 16, dtype=torch.double, requires_grad=True)
    neighbours = neighbour_pattern(knn_indices(x.detach(), 4), 4)

    def f(x):
        torch.manual_seed(1)  # same dropout mask on every call
        return model.blocks[0].attn(x, neighbours)

    assert not torch.allclose(f(x), model.eval().blocks[0].attn(x, neighbours))  # dropout is on
    model.train()
    assert torch.autograd.gradcheck(f, (x,))


def test_backward_reaches_every_used_parameter_and_checkpointing_matches():
    model = _model(dropout=0.0)
    x, atac, mask, counts = _inputs(2, 24, 40)
    _, loss = model(x, atac, mask, counts)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["blocks.0.cross.kv.weight"].abs().sum() > 0
    model.zero_grad()
    model.grad_checkpointing = True
    _, loss2 = model(x, atac, mask, counts)
    loss2.backward()
    assert torch.allclose(loss, loss2)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-6), n


def test_rna_only_ablation_has_no_peak_path():
    model = _model(use_atac=False)
    assert not any("peak" in n or "cross" in n for n, _ in model.named_parameters())
    x, _, mask, counts = _inputs(2, 24, 40)
    states, loss = model(x, None, mask, counts)
    assert states.shape == (2, 24, 16) and torch.isfinite(loss)


def test_bf16_autocast_on_cpu_stays_close_to_fp32():
    model = _model()
    x, atac, mask, counts = _inputs(2, 24, 40)
    states, loss = model(x, atac, mask, counts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states16, loss16 = model(x, atac, mask, counts)
    assert torch.isfinite(states16.float()).all()
    assert abs(loss16.item() - loss.item()) < 0.05 * abs(loss.item())


def test_candidates_must_match_genes():
    cfg = GRNTransformerConfig(n_genes=5, n_peaks=10, d_model=8, n_layers=1, n_heads=2, k_neighbors=2)
    with pytest.raises(AssertionError, match="n_genes=5"):
        GRNTransformer(cfg, torch.zeros(4, 3, dtype=torch.long))
