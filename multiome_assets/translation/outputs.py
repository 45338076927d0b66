"""Translated profiles in the shape scanpy, muon, snapATAC2 and SCENIC+ users open without a lookup
table (`../shared/STYLE.md` §5):

- one MuData per asset; the modality is named after what it holds: `atac` (RNA→ATAC) or `rna`
  (ATAC→RNA) for the `random` scenario, or for the one scenario of a cross-dataset translation;
  the other scenarios are `atac_<scenario>` / `rna_<scenario>`. Cells are the barcodes.
- cCREs named `chr:start-end` (hg38, the vocabulary's BED coordinates, 0-based starts as in BED),
  with `chrom`, `start`, `end` and `vocab_index` in `var`; genes by the dataset's own (unique)
  symbols where the dataset has the gene, else the vocabulary's symbol (made unique with its
  Ensembl id), with `gene_ids` and `vocab_index`.
- `X`: accessibility scores in [0, 1] (a ranking from training on balanced targets, not calibrated
  probabilities), with the calls at the calibrated threshold in the sparse layer `calls`; or
  expected expression on the log1p(CP10k) scale of `multiome`'s RNA, with the model's direct output
  (expected log1p count) in the layer `log1p_counts`, what the metrics score.
- `obs`: `source` (the dataset whose translator made it), `role` (`test`: held-out cells of the
  scenario's split; `translated`: a dataset the translator never saw), `cell_type` where known.
- `uns`: `direction`, `scenario`, `profile`, `source`, `translator` (content hash of its weights),
  and `threshold` (RNA→ATAC) or `library_size` (ATAC→RNA: the median counts per training cell that
  turn counts into CP10k).

Above `LOW_PRECISION_ENTRIES` cells × features, `X` is stored as float16 (scores to ~3 digits):
12,000 cells × 90,000 cCREs are 2.2 GB in float16 against 4.3 GB in float32.
"""
from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from multiome_assets.preprocess import TARGET_SUM

LOW_PRECISION_ENTRIES = 2**28  # 1 GiB of float32
MODALITY = {"rna2atac": "atac", "atac2rna": "rna"}
SCORES = {"rna2atac": "X", "atac2rna": "log1p_counts"}  # what the metrics read


def modality_name(direction: str, scenario: str, main: bool) -> str:
    return MODALITY[direction] if main else f"{MODALITY[direction]}_{scenario}"


def scenario_of(profile: ad.AnnData) -> str:
    return str(profile.uns["scenario"])


def scores(profile: ad.AnnData) -> np.ndarray:
    """The translator's output as the metrics score it: accessibility scores, or expected log1p counts."""
    direction = str(profile.uns["direction"])
    x = profile.X if SCORES[direction] == "X" else profile.layers[SCORES[direction]]
    return np.asarray(x, dtype=np.float32)


def cre_var(vocab_index: np.ndarray, ccres: pd.DataFrame) -> pd.DataFrame:
    """`var` of translated accessibility: cCREs named chr:start-end, in vocabulary order."""
    bed = ccres.iloc[vocab_index]
    names = bed.Chromosome.astype(str) + ":" + bed.Start.astype(str) + "-" + bed.End.astype(str)
    return pd.DataFrame({"chrom": bed.Chromosome.astype(str).to_numpy(), "start": bed.Start.to_numpy(np.int64),
                         "end": bed.End.to_numpy(np.int64), "vocab_index": np.asarray(vocab_index)},
                        index=pd.Index(names.to_numpy(), name="region"))


def gene_var(vocab_index: np.ndarray, vocab: pd.DataFrame, gene_vocab_map: pd.DataFrame) -> pd.DataFrame:
    """`var` of translated expression: each vocabulary gene named as the dataset names it (its own
    symbol), else by the vocabulary's symbol; a name shared by two genes becomes SYMBOL_ENSG."""
    rows = vocab.iloc[vocab_index]
    mapped = gene_vocab_map.dropna(subset=["vocab_index"]).drop_duplicates("vocab_index")
    own = mapped.set_index(mapped.vocab_index.astype(np.int64)).gene.reindex(np.asarray(vocab_index))
    names = pd.Series(np.where(own.notna(), own.to_numpy(), rows.symbol.to_numpy()), dtype=object)
    shared = names.duplicated(keep=False).to_numpy()
    names[shared] = names[shared] + "_" + rows.gene_id.to_numpy()[shared]
    return pd.DataFrame({"gene_ids": rows.gene_id.to_numpy(), "vocab_index": np.asarray(vocab_index)},
                        index=pd.Index(names.to_numpy(), name="gene"))


def weights_hash(checkpoint) -> str:
    """sha256 of a checkpoint's weights (names and values): which translator made a profile."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(checkpoint.weights):
        h.update(name.encode())
        h.update(checkpoint.weights[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def to_log_normalized(log1p_counts: np.ndarray, library_size: float) -> np.ndarray:
    """Expected log1p counts -> log1p(CP10k) at a cell of `library_size` counts."""
    return np.log1p(np.expm1(log1p_counts) * (TARGET_SUM / library_size)).astype(np.float32)


def profile(direction: str, x: np.ndarray, var: pd.DataFrame, cells: pd.Index, *, scenario: str, source: str,
            role: str, cell_types: np.ndarray | None, translator, profile_name: str, threshold: float | None = None,
            library_size: float | None = None) -> ad.AnnData:
    """One scenario's translated cells as an AnnData (module docstring); `translator`: its Checkpoint."""
    obs = pd.DataFrame({"source": source, "role": role}, index=pd.Index(np.asarray(cells, dtype=str), name="barcode"))
    if cell_types is not None:
        obs["cell_type"] = pd.Categorical(cell_types)
    uns = {"direction": direction, "scenario": scenario, "profile": profile_name, "source": source,
           "translator": weights_hash(translator)}
    layers = {}
    if direction == "rna2atac":
        layers["calls"] = sp.csr_matrix(x >= threshold, dtype=np.float32)
        uns["threshold"] = float(threshold)
        X = x
    else:
        uns["library_size"] = float(library_size)
        X = to_log_normalized(x, library_size)
        layers["log1p_counts"] = x.astype(np.float16) if x.size > LOW_PRECISION_ENTRIES else x
    if X.size > LOW_PRECISION_ENTRIES:
        X = X.astype(np.float16)
    return ad.AnnData(X, obs=obs, var=var, layers=layers, uns=uns)


def library_size(counts: sp.csr_matrix, rows: np.ndarray) -> float:
    """Median counts per cell of `rows` (the training cells)."""
    return float(np.median(np.asarray(counts[rows].sum(1)).ravel())) if len(rows) else float(TARGET_SUM)


def translated_mudata(profiles: dict[str, ad.AnnData]):
    """One MuData; its `uns` holds the translators' profile."""
    import mudata

    with mudata.set_options(pull_on_update=False):
        out = mudata.MuData(profiles)
    out.uns["profile"] = next(iter(profiles.values())).uns["profile"]
    return out
