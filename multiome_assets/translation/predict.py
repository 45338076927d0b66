"""Translated profiles: ATAC→RNA expected expression at every gene the dataset has, RNA→ATAC
accessibility scores at every covered cCRE, from the source modality alone. Queries go in chunks of
the profile's training sizes, as the model saw them; genes, which attend to each other, in chunks
of a fixed random order (as in training, not in vocabulary order). The RNA→ATAC scores come from
training on balanced targets: a ranking, not calibrated probabilities; the calls use a threshold
calibrated on validation cells."""
from __future__ import annotations

import numpy as np
import torch

from multiome_assets.models.cisformer import MAX_COUNT, N_BINS, Translator
from multiome_assets.models.progress import ChunkLog
from multiome_assets.translation.tokens import VocabCells, padded, sample_per_row


def bin_centres(upper: float) -> torch.Tensor:
    """log1p expression each bin stands for: 0 for bin 0, the middle of bins 1-7."""
    width = upper / (N_BINS - 1)
    return torch.cat([torch.zeros(1), (torch.arange(1, N_BINS) - 0.5) * width])


@torch.no_grad()
def translate_rna(model: Translator, cells: VocabCells, rows: np.ndarray, upper: float, *, batch_size: int = 32,
                  gene_chunk: int = 3_000, max_cres: int = 10_000, seed: int = 0, device: str = "cpu",
                  log=None) -> np.ndarray:
    """(len(rows), len(cells.genes)) expected log1p expression, columns in `cells.genes` order.
    `log(line)` hears of the progress over the cells."""
    model.eval().to(device)
    progress = ChunkLog(log, "ATAC→RNA translation", len(rows), "cells")
    rng = np.random.default_rng(seed)
    centres = bin_centres(upper).to(device)
    out = np.zeros((len(rows), len(cells.genes)), dtype=np.float32)
    order = rng.permutation(len(cells.genes))
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start:start + batch_size]
        ci, _, cm = padded(sample_per_row(cells.atac, batch_rows, max_cres, rng))
        for g0 in range(0, len(order), gene_chunk):
            columns = order[g0:g0 + gene_chunk]
            genes = torch.from_numpy(cells.genes[columns]).expand(len(batch_rows), -1)
            logits, _ = model(ci.to(device), cm.to(device), genes.to(device), torch.ones_like(genes, dtype=torch.bool, device=device))
            out[start:start + len(batch_rows), columns] = (logits.softmax(-1) @ centres).cpu().numpy()
        progress.advance(len(batch_rows))
    return out


@torch.no_grad()
def translate_atac(model: Translator, cells: VocabCells, rows: np.ndarray, *, batch_size: int = 16,
                   cre_chunk: int = 2_048, max_genes: int = 2_048, seed: int = 0, device: str = "cpu",
                   log=None) -> np.ndarray:
    """(len(rows), len(cells.cres)) accessibility scores in [0, 1], columns in `cells.cres` order.
    `log(line)` hears of the progress over the cells."""
    model.eval().to(device)
    progress = ChunkLog(log, "RNA→ATAC translation", len(rows), "cells")
    rng = np.random.default_rng(seed)
    out = np.zeros((len(rows), len(cells.cres)), dtype=np.float32)
    for start in range(0, len(rows), batch_size):
        batch_rows = rows[start:start + batch_size]
        gi, gv, gm = padded(sample_per_row(cells.rna, batch_rows, max_genes, rng))
        value = gv.round().long().clamp(0, MAX_COUNT).to(device)
        for c0 in range(0, len(cells.cres), cre_chunk):
            cres = torch.from_numpy(cells.cres[c0:c0 + cre_chunk]).expand(len(batch_rows), -1)
            logits, _ = model(gi.to(device), gm.to(device), cres.to(device), torch.ones_like(cres, dtype=torch.bool, device=device), value)
            out[start:start + len(batch_rows), c0:c0 + cres.shape[1]] = torch.sigmoid(logits).cpu().numpy()
        progress.advance(len(batch_rows))
    return out
