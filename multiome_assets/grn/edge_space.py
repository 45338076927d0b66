"""The regulator × gene pair space that GRN methods score and metrics evaluate.

Every scorer (transformer head, baselines, imported GRNs) returns a dense ``(R, G)`` float
matrix over ``EdgeSpace.regulators × EdgeSpace.genes``; every metric reads that matrix
together with the space's training positives (never candidates) and held-out labels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass(frozen=True)
class EdgeSpace:
    regulators: np.ndarray  # (R,) regulator symbols, each also in `genes`
    genes: np.ndarray  # (G,) target symbols (all dataset genes)
    train: sp.csr_matrix  # (R, G) bool: training prior edges, excluded from evaluation
    test: sp.csr_matrix  # (R, G) bool: held-out prior edges, the labels
    # (G,) training in-degree of each gene over every training edge, also those of regulators
    # outside this space: on the TF-held-out split the evaluated rows have no training edges,
    # but target popularity in the training prior is still there to exploit. None: train's column sums.
    target_in_degree: np.ndarray | None = None

    def __post_init__(self):
        missing = pd.Index(self.regulators).difference(pd.Index(self.genes))
        if len(missing):
            raise ValueError(f"{len(missing)} regulators are not among the genes, e.g. {list(missing[:3])}")

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.regulators), len(self.genes)

    @property
    def regulator_gene_index(self) -> np.ndarray:
        """(R,) column of each regulator in `genes`."""
        return pd.Index(self.genes).get_indexer(self.regulators)

    def self_mask(self) -> np.ndarray:
        """(R, G) bool, True on regulator == target."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[np.arange(len(self.regulators)), self.regulator_gene_index] = True
        return mask

    def candidate_mask(self) -> np.ndarray:
        """(R, G) bool: pairs that are evaluated (not self-loops, not training positives)."""
        return ~self.self_mask() & ~self.train.toarray()

    def candidates(self) -> "Candidates":
        flat = np.flatnonzero(self.candidate_mask())
        return Candidates(flat, self.test.toarray().ravel()[flat], *self.shape)

    def training_degrees(self) -> tuple[np.ndarray, np.ndarray]:
        """Training-prior degrees: out-degree (R,) per regulator, in-degree (G,) per gene (over every
        training edge, see `target_in_degree`). The popularity a degree baseline exploits; held-out
        edges never enter them."""
        train = self.train.astype(np.int64)
        in_degree = self.target_in_degree if self.target_in_degree is not None else np.asarray(train.sum(axis=0)).ravel()
        return np.asarray(train.sum(axis=1)).ravel(), in_degree

    @classmethod
    def from_edges(
        cls,
        regulators: np.ndarray | list[str],
        genes: np.ndarray | list[str],
        train_edges: pd.DataFrame,
        test_edges: pd.DataFrame,
    ) -> "EdgeSpace":
        """Build from edge tables with columns ``tf, target``; edges outside the space are dropped."""
        regulators = np.asarray(regulators, dtype=object)
        genes = np.asarray(genes, dtype=object)
        pairs = train_edges.drop_duplicates(["tf", "target"])
        cols = pd.Index(genes).get_indexer(pairs["target"])
        return cls(
            regulators,
            genes,
            _edge_matrix(train_edges, regulators, genes),
            _edge_matrix(test_edges, regulators, genes),
            np.bincount(cols[cols >= 0], minlength=len(genes)),
        )

    def to_frame(self, scores: np.ndarray, *, mask: np.ndarray | None = None) -> pd.DataFrame:
        """Long table (tf, target, score) of a (R, G) score matrix, optionally only where `mask`."""
        if scores.shape != self.shape:
            raise ValueError(f"scores have shape {scores.shape}, edge space is {self.shape}")
        rows, cols = np.nonzero(mask) if mask is not None else np.indices(self.shape).reshape(2, -1)
        return pd.DataFrame(
            {"tf": self.regulators[rows], "target": self.genes[cols], "score": scores[rows, cols]}
        )


@dataclass(frozen=True)
class Candidates:
    """The evaluated pairs of a space, row-major, with their labels."""

    flat: np.ndarray  # (n,) flat indices into (R, G) of the candidate pairs
    labels: np.ndarray  # (n,) bool: held-out edge
    R: int
    G: int

    @property
    def rows(self) -> np.ndarray:
        return self.flat // self.G


def score_vector(scores: np.ndarray, space: EdgeSpace, flat: np.ndarray) -> np.ndarray:
    """(n,) scores of an (R, G) matrix at the candidates (`flat`); float32 stays float32 (faster sort, half the memory)."""
    scores = np.asarray(scores)
    if scores.shape != space.shape:
        raise ValueError(f"scores have shape {scores.shape}, edge space is {space.shape}")
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    s = scores.ravel()[flat]
    if np.isnan(s).any():
        n_nan = int(np.isnan(s).sum())
        raise ValueError(f"scores contain {n_nan} NaN on candidates; use -inf for 'no score'")
    return s


def _edge_matrix(edges: pd.DataFrame, regulators: np.ndarray, genes: np.ndarray) -> sp.csr_matrix:
    r = pd.Index(regulators).get_indexer(edges["tf"])
    g = pd.Index(genes).get_indexer(edges["target"])
    keep = (r >= 0) & (g >= 0)
    data = np.ones(int(keep.sum()), dtype=bool)
    m = sp.csr_matrix((data, (r[keep], g[keep])), shape=(len(regulators), len(genes)), dtype=bool)
    m.sum_duplicates()
    return m
