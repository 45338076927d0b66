"""What the GRN assets store: small dataclasses, saved as plain data (tensors, str, numbers).

Each has ``to_state()`` (plain data only, so the warehouse reads it back with
``torch.load(weights_only=True)``) and ``from_state()``. Method identity is fields
(:class:`HeadInput`, :class:`HeadKey`), not strings parsed back; the SQL method names come from
:meth:`HeadInput.method`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from multiome_assets.models.checkpoint import Checkpoint

BACKBONES = ("full", "rna_only", "random_candidates")  # the Stage 1 variants (ablations)


@dataclass(frozen=True)
class HeadInput:
    """What a Stage 2 head reads per gene: an embedding, the training degrees, or both.

    ``embedding``: a backbone variant, ``"svd"`` (the backbones' starting identities, no
    pretraining) or None (degrees alone).
    """

    embedding: str | None
    degrees: bool = False

    @property
    def name(self) -> str:
        """full, svd, full+degree, degree, ... (benchmark flags and head history)."""
        if self.embedding is None:
            return "degree"
        return self.embedding + ("+degree" if self.degrees else "")

    def method(self, objective: str) -> str:
        """The method name in SQL: epiawarenet_bce, epiawarenet_nnpu_rna_only, epiawarenet_bce_degree,
        epiawarenet_bce_rna_only_degree, ..., and the heads without a backbone mlp_svd_bce, mlp_degree_bce."""
        if self.embedding in ("svd", None):
            return f"mlp_{self.embedding or 'degree'}_{objective}"
        variant = "" if self.embedding == "full" else f"_{self.embedding}"
        return f"epiawarenet_{objective}{variant}" + ("_degree" if self.degrees else "")

    def degree_kinds(self, split: str) -> tuple[str, ...]:
        """Training degrees the head reads. On the TF-held-out split the in-degrees only: every
        evaluated regulator has no training edge, so its out-degree is 0 by construction, and a head
        that reads it learns "out-degree 0 = unlabeled" and ranks held-out TFs' edges below chance
        (SNARE-seq, degrees alone, BCE: AUROC 0.22; docs/results.md)."""
        if not self.degrees:
            return ()
        return ("in",) if split == "tf_heldout" else ("out", "in")

    @classmethod
    def from_name(cls, name: str) -> "HeadInput":
        by_name = {x.name: x for x in HEAD_INPUTS}
        if name not in by_name:
            raise ValueError(f"unknown head input {name!r}; known: {list(by_name)}")
        return by_name[name]


HEAD_INPUTS = (*(HeadInput(b) for b in BACKBONES), HeadInput("svd"),
               HeadInput("full", True), HeadInput("rna_only", True), HeadInput(None, True))
OBJECTIVES = ("bce", "nnpu")


@dataclass(frozen=True)
class HeadKey:
    input: HeadInput
    objective: str
    split: str  # random, tf_heldout, or all (trained on every prior edge: the export)


def _history_state(history: pd.DataFrame) -> dict:
    """Numeric columns as tensors (an empty history's columns are object dtype: float64 then)."""
    return {c: torch.as_tensor(history[c].to_numpy(np.float64 if history[c].dtype == object else None))
            for c in history.columns}


def _history(state: dict) -> pd.DataFrame:
    return pd.DataFrame({c: v.numpy() for c, v in state.items()})


@dataclass
class Backbone:
    """A pretrained Stage 1 backbone: the best-validation weights and how training went."""

    checkpoint: Checkpoint  # kind "grn_backbone"; features: genes, peaks
    train_config: dict
    candidates: np.ndarray  # (genes, C) candidate peak columns, -1 padded
    best_epoch: int
    best_val_loss: float
    nb_target: str  # where the NB targets came from (pretrain.nb_targets)
    history: pd.DataFrame  # epoch, train_loss, val_loss
    profile: str = ""

    @property
    def d_model(self) -> int:
        return int(self.checkpoint.config["d_model"])

    def to_state(self) -> dict:
        return {"checkpoint": self.checkpoint.to_state(), "train_config": dict(self.train_config),
                "candidates": torch.as_tensor(self.candidates), "best_epoch": int(self.best_epoch),
                "best_val_loss": float(self.best_val_loss), "nb_target": self.nb_target,
                "history": _history_state(self.history), "profile": self.profile}

    @classmethod
    def from_state(cls, s: dict) -> "Backbone":
        return cls(Checkpoint.from_state(s["checkpoint"]), s["train_config"], s["candidates"].numpy(),
                   s["best_epoch"], s["best_val_loss"], s["nb_target"], _history(s["history"]), s["profile"])


@dataclass
class GeneEmbeddings:
    """Per-gene embeddings per head input and cell set (`all`, and each cell type with labels)."""

    genes: list[str]
    cell_sets: dict[str, np.ndarray]  # name -> cell indices
    embeddings: dict[str, dict[str, np.ndarray]]  # full | rna_only | random_candidates | svd -> cell set -> (G, d)
    profile: str = ""

    def of(self, head_input: HeadInput, cell_set: str = "all") -> np.ndarray:
        """The (G, d) embedding a head of `head_input` reads (degree heads add the degrees themselves)."""
        if head_input.embedding is None:
            return np.zeros((len(self.genes), 0), dtype=np.float32)
        return self.embeddings[head_input.embedding][cell_set]

    def to_state(self) -> dict:
        return {"genes": list(map(str, self.genes)),
                "cell_sets": {k: torch.as_tensor(v) for k, v in self.cell_sets.items()},
                "embeddings": {e: {c: torch.as_tensor(z) for c, z in by_set.items()} for e, by_set in self.embeddings.items()},
                "profile": self.profile}

    @classmethod
    def from_state(cls, s: dict) -> "GeneEmbeddings":
        return cls(s["genes"], {k: v.numpy() for k, v in s["cell_sets"].items()},
                   {e: {c: z.numpy() for c, z in by_set.items()} for e, by_set in s["embeddings"].items()},
                   s["profile"])


@dataclass
class EdgeHeads:
    """Stage 2 heads, one per (input, objective, split), over every TF of the TF list."""

    regulators: np.ndarray  # (R,) the rows every head scores
    heads: dict[HeadKey, Checkpoint]
    history: pd.DataFrame  # per head and epoch
    config: dict  # the EdgeHeadConfig they share (degree_features aside)

    def to_state(self) -> dict:
        heads = [{"embedding": k.input.embedding, "degrees": k.input.degrees, "objective": k.objective,
                  "split": k.split, "checkpoint": ckpt.to_state()} for k, ckpt in self.heads.items()]
        history = self.history.drop(columns="head")
        return {"regulators": list(map(str, self.regulators)), "heads": heads,
                "history": _history_state(history), "history_head": list(self.history["head"]),
                "config": dict(self.config)}

    @classmethod
    def from_state(cls, s: dict) -> "EdgeHeads":
        heads = {HeadKey(HeadInput(h["embedding"], h["degrees"]), h["objective"], h["split"]):
                 Checkpoint.from_state(h["checkpoint"]) for h in s["heads"]}
        history = _history(s["history"]).assign(head=s["history_head"])
        return cls(np.asarray(s["regulators"], dtype=object), heads, history, s["config"])


@dataclass
class BaselineScores:
    """Expression baselines' (R, G) scores over every TF of the TF list × every gene."""

    regulators: np.ndarray
    genes: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (R, G) float32

    def to_state(self) -> dict:
        return {"regulators": list(map(str, self.regulators)), "genes": list(map(str, self.genes)),
                "scores": {k: torch.as_tensor(v) for k, v in self.scores.items()}}

    @classmethod
    def from_state(cls, s: dict) -> "BaselineScores":
        return cls(np.asarray(s["regulators"], dtype=object), np.asarray(s["genes"], dtype=object),
                   {k: v.numpy() for k, v in s["scores"].items()})
