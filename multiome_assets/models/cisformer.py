"""Cisformer (Genome Biology 2025): RNA↔ATAC translation by cross-attention over fixed vocabularies.

Genes are the 38,244-gene vocabulary (a learned embedding each); CREs the 1,033,239 cCREs, embedded
by the digits of their index: the index zero-padded to 7 digits, each digit looked up in one shared
``Embedding(10, d / 7)``, the 7 parts concatenated. Both vocabularies are fixed, so a translator
trained on one dataset applies to any dataset mapped to them.

Decoder-only stacks: the source tokens are embedded, not encoded by layers of their own; each layer
is (self-attention among the queries, for ATAC→RNA) + cross-attention to the source + FFN ×4, each
with a residual and a LayerNorm after it.

- RNA→ATAC: CRE queries cross-attend to the expressed genes (gene embedding + embedded count, capped
  at 64); one-layer MLP to a logit per CRE (sigmoid + BCE).
- ATAC→RNA: gene queries self-attend, then cross-attend to the active CREs; an 8-way logit per gene
  (bin 0 = zero, 7 equal-width bins of log1p expression up to the training maximum).

Tokens are padded per batch; masks say which keys may be attended (True = real token), so padded
keys change no output (`models.attention`). Differences from the reference, on purpose: padded keys
are masked in every softmax (the reference leaves them in); attention goes through
`F.scaled_dot_product_attention` (no flash-attn dependency); ATAC→RNA adds a learned per-gene bias to
the bin logits (each gene's marginal), so the layers only have to learn what the cell's ATAC
changes: without it the small `cpu` model predicted one distribution for every gene (docs/translation.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from multiome_assets.models.attention import MultiHeadAttention
from multiome_assets.models.layers import Dropout

N_DIGITS = 7  # 1,033,239 cCREs: indices below 10**7
MAX_COUNT = 64  # RNA→ATAC input counts are capped here
N_BINS = 8  # ATAC→RNA output classes


@dataclass(frozen=True)
class TranslatorConfig:
    direction: str  # "rna2atac" or "atac2rna"
    n_genes: int = 38_244
    n_cres: int = 1_033_239
    d_model: int = 210
    n_layers: int = 6
    n_heads: int = 6
    head_dim: int = 128
    ffn_mult: int = 4
    dropout: float = 0.1
    head_layers: int = 2  # 1: one linear output layer, as the reference code (M2M.py `to_out`)

    def __post_init__(self):
        if self.direction not in ("rna2atac", "atac2rna"):
            raise ValueError(f"direction must be 'rna2atac' or 'atac2rna', got {self.direction!r}")
        if self.d_model % N_DIGITS:
            raise ValueError(f"d_model={self.d_model} must be divisible by {N_DIGITS} (one part per CRE index digit)")
        if self.n_cres > 10**N_DIGITS:
            raise ValueError(f"n_cres={self.n_cres} needs more than {N_DIGITS} digits")


def cre_digits(index: torch.Tensor) -> torch.Tensor:
    """(...,) CRE indices -> (..., 7) their decimal digits, most significant first (zero-padded)."""
    powers = 10 ** torch.arange(N_DIGITS - 1, -1, -1, device=index.device)
    return torch.div(index[..., None], powers, rounding_mode="floor") % 10


class CREEmbedding(nn.Module):
    """A CRE's embedding from the digits of its index: one shared Embedding(10, d / 7) per digit."""

    def __init__(self, d_model: int):
        super().__init__()
        self.digit = nn.Embedding(10, d_model // N_DIGITS)

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        """(...,) indices -> (..., d)."""
        return self.digit(cre_digits(index)).flatten(-2)


class DecoderLayer(nn.Module):
    """[self-attention] -> cross-attention to the source -> FFN, each residual + LayerNorm."""

    def __init__(self, c: TranslatorConfig, self_attention: bool):
        super().__init__()
        d = c.d_model
        self.self_attn = MultiHeadAttention(d, c.n_heads, c.head_dim) if self_attention else None
        self.ln_self = nn.LayerNorm(d) if self_attention else None
        self.cross_attn = MultiHeadAttention(d, c.n_heads, c.head_dim)
        self.ln_cross = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, c.ffn_mult * d), nn.GELU(), Dropout(c.dropout), nn.Linear(c.ffn_mult * d, d))
        self.ln_ffn = nn.LayerNorm(d)
        self.dropout = Dropout(c.dropout)

    def forward(self, x, x_mask, source, source_mask, need_weights: bool = False):
        x = self._self_attention(x, x_mask)
        attended = self.cross_attn(x, source, source_mask, need_weights=need_weights)
        attended, weights = attended if need_weights else (attended, None)
        x = self.ln_cross(x + self.dropout(attended))
        x = self.ln_ffn(x + self.dropout(self.ffn(x)))
        return x, weights

    def cross_weights(self, x, x_mask, source, source_mask):
        """This layer's (B, H, queries, keys) cross-attention weights alone, as `forward` computes them."""
        return self.cross_attn.weights(self._self_attention(x, x_mask), source, source_mask)

    def _self_attention(self, x, x_mask):
        if self.self_attn is None:
            return x
        return self.ln_self(x + self.dropout(self.self_attn(x, None, x_mask)))


class Translator(nn.Module):
    """Both directions; `config.direction` says which. Inputs are padded index tensors with masks
    (True = real token); `forward` returns the logits at the query tokens and, given targets, the
    loss; `attention` returns the logits and each layer's cross-attention weights."""

    def __init__(self, config: TranslatorConfig):
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.gene = nn.Embedding(c.n_genes, d)
        self.cre = CREEmbedding(d)
        if c.direction == "rna2atac":
            self.count = nn.Embedding(MAX_COUNT + 1, d)
        self.layers = nn.ModuleList(DecoderLayer(c, self_attention=c.direction == "atac2rna") for _ in range(c.n_layers))
        n_out = 1 if c.direction == "rna2atac" else N_BINS
        hidden = [nn.Linear(d, d), nn.GELU()] if c.head_layers == 2 else []
        self.head = nn.Sequential(*hidden, nn.Linear(d, n_out))
        if c.direction == "atac2rna":  # each gene's own output bias: its marginal over the bins
            self.gene_bias = nn.Embedding(c.n_genes, N_BINS)
            nn.init.zeros_(self.gene_bias.weight)

    def embed_source(self, index, value=None):
        if self.config.direction == "rna2atac":
            return self.gene(index) + self.count(value.clamp(0, MAX_COUNT))
        return self.cre(index)

    def embed_queries(self, index):
        return self.cre(index) if self.config.direction == "rna2atac" else self.gene(index)

    def forward(self, source_index, source_mask, query_index, query_mask, source_value=None, targets=None):
        """rna2atac: source = expressed genes (index, count), queries = CREs -> (B, Lq) logits.
        atac2rna: source = active CREs, queries = genes -> (B, Lq, 8) bin logits.
        -> (logits, loss): with `targets` (B, Lq) the mean BCE (rna2atac, 0/1) or cross-entropy
        over bins (atac2rna) on real queries, in fp32; else None."""
        logits, _ = self._run(source_index, source_mask, query_index, query_mask, source_value, need_weights=False)
        loss = None if targets is None else self._loss(logits.float(), targets, query_mask)
        return logits, loss

    def attention(self, source_index, source_mask, query_index, query_mask, source_value=None):
        """-> (logits, weights): each layer's cross-attention weights (B, H, queries, keys) as the
        model computed them."""
        return self._run(source_index, source_mask, query_index, query_mask, source_value, True)

    def last_attention(self, source_index, source_mask, query_index, query_mask, source_value=None):
        """The last layer's cross-attention weights (B, H, queries, keys), what the links read; the
        last layer's output, feed-forward and head are not computed."""
        source = self.embed_source(source_index, source_value)
        x = self.embed_queries(query_index)
        for layer in self.layers[:-1]:
            x, _ = layer(x, query_mask, source, source_mask)
        return self.layers[-1].cross_weights(x, query_mask, source, source_mask)

    def _run(self, source_index, source_mask, query_index, query_mask, source_value, need_weights: bool):
        source = self.embed_source(source_index, source_value)
        x = self.embed_queries(query_index)
        weights = []
        for layer in self.layers:
            x, w = layer(x, query_mask, source, source_mask, need_weights)
            weights.append(w)
        logits = self.head(x)
        logits = logits.squeeze(-1) if self.config.direction == "rna2atac" else logits + self.gene_bias(query_index)
        return logits, weights

    def _loss(self, logits, targets, query_mask):
        if self.config.direction == "rna2atac":
            per = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        else:
            per = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        return (per * query_mask).sum() / query_mask.sum().clamp_min(1)
