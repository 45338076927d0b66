"""One checkpoint contract for every model: config, weights, feature names, a format version.

A checkpoint is plain data (tensors, str, numbers, lists, dicts), so it loads with
``torch.load(weights_only=True)``: no pickled classes, no code runs on load. Loading checks that
the checkpoint is the kind of model asked for, in a format this code reads, with a config this
code knows, trained on the same features in the same order; otherwise it is refused with a
message saying what differs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

FORMAT_VERSION = 1


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model or data it is loaded for."""


@dataclass
class Checkpoint:
    kind: str  # which model: "grn_backbone", "edge_head", ...
    config: dict  # the model's config dataclass as a dict
    weights: dict[str, torch.Tensor]  # state_dict
    features: dict[str, list[str]] = field(default_factory=dict)  # e.g. {"genes": [...], "peaks": [...]}
    format_version: int = FORMAT_VERSION

    def to_state(self) -> dict:
        return {"kind": self.kind, "config": dict(self.config), "weights": dict(self.weights),
                "features": {k: list(map(str, v)) for k, v in self.features.items()},
                "format_version": self.format_version}

    @classmethod
    def from_state(cls, state: dict) -> "Checkpoint":
        return cls(state["kind"], state["config"], state["weights"], state.get("features", {}),
                   state.get("format_version", 0))

    def model_config(self, config_class, kind: str):
        """The config dataclass, after checking kind, format and fields."""
        if self.kind != kind:
            raise CheckpointMismatch(f"checkpoint is a {self.kind!r}, not a {kind!r}")
        if self.format_version != FORMAT_VERSION:
            raise CheckpointMismatch(f"checkpoint format {self.format_version}, this code reads {FORMAT_VERSION}: "
                                     "rematerialize it")
        known = {f.name for f in dataclasses.fields(config_class)}
        unknown = sorted(set(self.config) - known)
        if unknown:
            raise CheckpointMismatch(f"{kind} checkpoint has config fields this code does not know: {unknown}")
        return config_class(**self.config)

    def require_features(self, **expected) -> None:
        """Refuse unless every named feature list equals the checkpoint's (same names, same order)."""
        for name, now in expected.items():
            trained = self.features.get(name)
            if trained is None:
                continue
            now = list(map(str, now))
            if trained != now:
                raise CheckpointMismatch(f"{self.kind} was trained on other {name} than it is given: "
                                         f"{_first_difference(trained, now)}")


def _first_difference(trained: list[str], now: list[str]) -> str:
    if len(trained) != len(now):
        return f"{len(trained)} in training vs {len(now)} now"
    i = next(i for i, (a, b) in enumerate(zip(trained, now)) if a != b)
    return f"position {i} is {trained[i]!r} in training, {now[i]!r} now"
