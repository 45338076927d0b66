"""Interrupted training that resumes where it stopped: after every epoch, one file holds the model,
optimizer, scheduler, every random stream (NumPy's data order, torch's generators) and the loop's
own state, replaced atomically; a rerun of the same training on the same data picks it up and ends
with the same weights as a run never interrupted (CPU, same seed).

A file left by another configuration or other data is refused naming what differs, never resumed."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from multiome_assets.files import atomic_path, local_file


def fingerprint(*arrays) -> str:
    """sha256 over arrays: what a training learns from (its rows, their values, its splits)."""
    h = hashlib.sha256()
    for part in arrays:
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def save(path: Path, *, model, opt, sched, rng: np.random.Generator, configs: dict, data: str, state: dict,
         generators: dict[str, torch.Generator] | None = None) -> None:
    """Write the training's whole state to `path`, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"configs": configs, "data": data, "weights": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "numpy_rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "generators": {k: g.get_state() for k, g in (generators or {}).items()}, "state": state}, tmp)


def resume(path: Path, *, model, opt, sched, rng: np.random.Generator, configs: dict, data: str,
           generators: dict[str, torch.Generator] | None = None) -> dict:
    """Restore what `save` wrote into these objects; return the loop's state. Refused (naming the
    file and what differs) when it is a training of another configuration or other data."""
    with local_file(path) as local:
        saved = torch.load(local, map_location="cpu", weights_only=True)
    if saved.get("data") != data:
        raise ValueError(f"{path}: an interrupted training on other cells, data or splits; delete it to start over")
    for name, now in configs.items():
        before = saved["configs"].get(name, {})
        if before != now:
            differ = sorted(k for k in set(now) | set(before) if before.get(k) != now.get(k))
            raise ValueError(f"{path}: an interrupted training with another {name} ({differ} differ); "
                             "delete it to start over")
    model.load_state_dict(saved["weights"])
    opt.load_state_dict(saved["optimizer"])
    sched.load_state_dict(saved["scheduler"])
    rng.bit_generator.state = saved["numpy_rng"]
    torch.set_rng_state(saved["torch_rng"])
    for name, generator in (generators or {}).items():
        generator.set_state(saved["generators"][name])
    state = saved["state"]
    if "best_state" in state:  # written before the backbone and the translators shared models/trainer.py
        state["best_weights"] = state.pop("best_state")
    return state
