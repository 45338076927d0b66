"""TF motifs in cCRE sequences: JASPAR motifs (MEME format), a genome FASTA the user names, and a
vectorized scan (a 1-D convolution of one-hot sequences with log-odds matrices, both strands).

A cCRE holds a motif where some window wholly inside it scores at least the motif's threshold: the
log-odds score a random sequence (uniform background) reaches with probability `P_VALUE` (FIMO's
default 1e-4), from the exact score distribution of the matrix at 0.01-bit resolution.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multiome_assets.dataset import DatasetError

P_VALUE = 1e-4
PSEUDOCOUNT = 0.01
RESOLUTION = 100  # score units per bit for the exact score distribution
VALID_BASES = b"ACGTNacgtnRYKMSWBDHVryk msw bdhv".replace(b" ", b"")
CHUNK_CRES = 32  # cCREs per convolution: scores are (32, 2 x motifs, positions) floats


@dataclass
class Motifs:
    ids: list[str]
    names: list[str]
    log_odds: torch.Tensor  # (M, 4, W_max), columns past a motif's width are 0
    widths: np.ndarray  # (M,)
    thresholds: torch.Tensor  # (M,) log-odds score reached by chance with probability P_VALUE


def read_meme(path: Path) -> Motifs:
    """The motifs of a MEME-format file (letter-probability matrices, ACGT), as log-odds against a
    uniform background."""
    text = Path(path).read_text()
    blocks = re.findall(r"^MOTIF\s+(\S+)(?:[ \t]+(\S+))?.*?letter-probability matrix:[^\n]*\n((?:\s*[\d.eE+-]+\s+[\d.eE+-]+\s+"
                        r"[\d.eE+-]+\s+[\d.eE+-]+\s*\n)+)", text, flags=re.M | re.S)
    if not blocks:
        raise DatasetError(f"{path}: no MEME letter-probability matrices found")
    matrices = [np.array(m.split(), dtype=np.float64).reshape(-1, 4) for _, _, m in blocks]
    width = max(len(m) for m in matrices)
    log_odds = np.zeros((len(matrices), 4, width))
    thresholds = np.zeros(len(matrices))
    for i, m in enumerate(matrices):
        lo = np.log2((m + PSEUDOCOUNT) / (1 + 4 * PSEUDOCOUNT) / 0.25)
        log_odds[i, :, :len(m)] = lo.T
        thresholds[i] = score_threshold(lo, P_VALUE)
    return Motifs([b[0] for b in blocks], [b[1] or b[0] for b in blocks], torch.tensor(log_odds, dtype=torch.float32),
                  np.array([len(m) for m in matrices]), torch.tensor(thresholds, dtype=torch.float32))


def score_threshold(log_odds: np.ndarray, p_value: float) -> float:
    """The lowest score a window of uniform random bases reaches with probability <= `p_value`, for a
    (width, 4) log-odds matrix: the exact distribution, column by column, on a 1/RESOLUTION-bit grid."""
    scores = np.round(log_odds * RESOLUTION).astype(np.int64)
    scores -= scores.min(1, keepdims=True)  # each column from 0; the offset is added back below
    offset = np.round(log_odds * RESOLUTION).astype(np.int64).min(1).sum()
    dist = np.ones(1)
    for column in scores:
        grown = np.zeros(len(dist) + column.max())
        for s in column:
            grown[s:s + len(dist)] += 0.25 * dist
        dist = grown
    tail = np.cumsum(dist[::-1])[::-1]  # P(score >= k)
    k = int(np.argmax(tail <= p_value)) if (tail <= p_value).any() else len(dist) - 1
    return (k + offset) / RESOLUTION


def read_fasta(path: Path, chromosomes: set[str]) -> dict[str, bytes]:
    """The sequences of `chromosomes` from a FASTA file, upper-cased; refused with the file and line
    when a line is not sequence, and naming the chromosomes the file lacks."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: the genome FASTA does not exist")
    wanted, found, current, parts = set(chromosomes), {}, None, []
    try:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if line.startswith(b">"):
                    if current is not None:
                        found[current] = b"".join(parts).upper()
                    name = line[1:].split()[0].decode() if line[1:].split() else ""
                    current, parts = (name if name in wanted else None), []
                    continue
                line = line.rstrip(b"\r\n")
                if number == 1 or line.translate(None, VALID_BASES):
                    raise DatasetError(f"{path}, line {number}: not FASTA sequence ({line[:40]!r})")
                if current is not None:
                    parts.append(line)
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: a FASTA header is not text") from None
    if current is not None:
        found[current] = b"".join(parts).upper()
    missing = sorted(wanted - set(found))
    if missing:
        raise DatasetError(f"{path}: lacks chromosome(s) {', '.join(missing)} that the cCREs are on")
    return found


def one_hot(genome: dict[str, bytes], cres: pd.DataFrame, path: Path | str = "genome") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4, L) one-hot sequences of the cCREs (chrom, start, end), N and padding all-zero, and
    (N,) their lengths. Refused when a cCRE runs past its chromosome's end (another build?)."""
    lengths = (cres.end - cres.start).to_numpy()
    out = np.zeros((len(cres), 4, int(lengths.max()) if len(cres) else 0), dtype=np.float32)
    lookup = np.full(256, -1, dtype=np.int64)
    lookup[list(b"ACGT")] = np.arange(4)
    for chrom, group in cres.groupby("chrom", sort=False):  # one array per chromosome, not per cCRE
        sequence = np.frombuffer(genome[chrom], dtype=np.uint8)
        too_long = group.end.to_numpy() > len(sequence)
        if too_long.any():
            raise DatasetError(f"{path}: {chrom} has {len(sequence):,} bp but cCREs reach {group.end.max():,}: "
                               "a FASTA of another genome build? The cCREs are hg38")
        rows = np.flatnonzero(cres.chrom.to_numpy() == chrom)
        width = lengths[rows]
        offsets = np.arange(out.shape[2])
        inside = offsets[None, :] < width[:, None]
        position = np.minimum(group.start.to_numpy()[:, None] + offsets[None, :], len(sequence) - 1)
        base = lookup[sequence[position]]
        r, o = np.nonzero(inside & (base >= 0))
        out[rows[r], base[r, o], o] = 1.0
    return torch.from_numpy(out), torch.as_tensor(lengths)


def motif_hits(motifs: Motifs, sequences: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """(N, M) bool: cCRE n has a window, wholly inside it, on either strand, scoring at least motif
    m's threshold."""
    weights = torch.cat([motifs.log_odds, motifs.log_odds.flip(1, 2)])  # + strand, - strand (A<->T, C<->G)
    W = weights.shape[2]
    w = torch.as_tensor(motifs.widths)
    # a window at output position p starts at s = p - W in the sequence; the - strand matrix is
    # right-aligned in its padded columns, so its motif starts at s + W - w
    lowest = torch.stack([torch.zeros_like(w), w - W])[None, :, :, None]  # (1, 2, M, 1)
    margin = torch.stack([w, torch.full_like(w, W)])[None, :, :, None]
    hits = np.zeros((len(sequences), len(motifs.ids)), dtype=bool)
    for start in range(0, len(sequences), CHUNK_CRES):
        x = torch.nn.functional.pad(sequences[start:start + CHUNK_CRES], (W, W))
        scores = torch.nn.functional.conv1d(x, weights).view(len(x), 2, len(motifs.ids), -1)
        s = torch.arange(scores.shape[-1]) - W
        inside = (s >= lowest) & (s <= lengths[start:start + len(x), None, None, None] - margin)
        best = scores.masked_fill(~inside, float("-inf")).amax(dim=(1, 3))
        hits[start:start + len(x)] = (best >= motifs.thresholds).numpy()
    return hits


def scan(cres: pd.DataFrame, fasta: Path, motif_file: Path) -> tuple[Motifs, np.ndarray]:
    """The JASPAR motifs of `motif_file` and their (N, M) hits in the cCREs (chrom, start, end) of
    the genome `fasta`."""
    jaspar = read_meme(motif_file)
    genome = read_fasta(fasta, set(cres.chrom))
    return jaspar, motif_hits(jaspar, *one_hot(genome, cres, fasta))
