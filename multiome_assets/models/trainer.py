"""One training skeleton for every model of the project (the EpiAwareNet backbone, the Cisformer
translators, the edge heads): epochs of global batches, each process's shard of every batch under
torchrun (DDP), gradient clipping, the learning-rate schedule per step or per epoch, validation,
early stopping with the best weights kept, a checkpoint after every epoch that a rerun resumes
from, and progress lines. What a model does with a batch is the caller's `step`.

Random streams: the caller seeds torch inside :func:`seeded` (model creation and training alike)
and hands over one NumPy generator for the data order; `batches(rng)` and `step` draw from them in
a fixed order, so a run is reproducible and a resumed run ends with the weights of one never
interrupted (CPU, same seed).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from multiome_assets.models import distributed, resume
from multiome_assets.models.progress import TrainingLog


@contextlib.contextmanager
def seeded(seed: int, device: str | torch.device = "cpu") -> Iterator[None]:
    """torch's random streams seeded with `seed` inside the block, and as they were after it."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class Schedule:
    max_epochs: int
    patience: float = math.inf  # epochs without a better validation loss before stopping
    max_steps: float = math.inf  # optimizer steps in all
    grad_clip: float | None = None  # max gradient norm
    scheduler_per: Literal["step", "epoch"] = "step"


@dataclass
class Step:
    """What one optimizer step computed on this process's shard of a global batch."""

    loss: torch.Tensor  # the mean loss over this shard's `weight` items: what is backpropagated
    rows: int  # this shard's rows (cells, pairs), for cells/s
    weight: int  # items the mean is over here (query tokens, masked genes; 1: every step counts once)
    total: int  # items in the whole global batch (gradients are those of the global mean)
    value: float | None = None  # the loss to report, when not `loss` (nnPU: its risk)
    extra: dict[str, float] = field(default_factory=dict)  # more per-step numbers, averaged per epoch


def fit(model: torch.nn.Module, opt, sched, rng: np.random.Generator, schedule: Schedule, *,
        batches: Callable[[np.random.Generator], list], step: Callable[[torch.nn.Module, object], Step],
        validate: Callable[[], float] | None = None, validate_untrained: bool = False,
        checkpoint: Path | None = None, configs: dict | None = None, data: str = "",
        generators: dict[str, torch.Generator] | None = None, log=None, name: str = "") -> tuple[pd.DataFrame, dict]:
    """Train `model` and leave it holding its best weights (lowest validation loss; the last epoch's
    without `validate`). Returns the history (epoch, train_loss, val_loss and `extra` columns; epoch
    0 is the untrained model when `validate_untrained`) and the final state (best, best_epoch, ...).

    `batches(rng)`: the epoch's global batches. `step(net, batch)`: forward on this process's
    shard through `net` (the model, DDP-wrapped under torchrun). `checkpoint`: the file the whole
    training state goes to after every epoch and is resumed from (refused if written by another
    configuration `configs` or other `data`)."""
    state = {"epoch": 0, "step": 0, "history": [], "best": math.inf, "best_epoch": 0, "best_weights": None, "stale": 0}
    streams = dict(model=model, opt=opt, sched=sched, rng=rng, configs=configs or {}, data=data, generators=generators)
    if checkpoint is not None and checkpoint.exists():
        state |= resume.resume(checkpoint, **streams)  # a translator's file from before has no step or best_epoch
    elif validate_untrained:
        val_loss = validate() if validate else math.nan
        state["history"].append({"epoch": 0, "train_loss": math.nan, "val_loss": val_loss})
        if math.isfinite(val_loss):
            state.update(best=val_loss, best_weights=cpu_weights(model))
    rank, _ = distributed.world()
    net = distributed.parallel(model)  # DDP under torchrun: each process trains on its shard of every batch
    progress = TrainingLog(log if rank == 0 else None, name, max_epochs=schedule.max_epochs)
    while state["epoch"] < schedule.max_epochs and state["stale"] < schedule.patience \
            and state["step"] < schedule.max_steps:
        epoch = state["epoch"] + 1
        model.train()
        epoch_batches = batches(rng)
        progress.start_epoch(epoch, int(min(len(epoch_batches), schedule.max_steps - state["step"])))
        sums = {"loss": 0.0, "weight": 0.0}
        for batch in epoch_batches:
            done = step(net, batch)
            opt.zero_grad(set_to_none=True)
            (done.loss * distributed.shard_weight(done.weight, done.total)).backward()
            if schedule.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), schedule.grad_clip)
            opt.step()
            if sched is not None and schedule.scheduler_per == "step":
                sched.step()
            value = done.loss.item() if done.value is None else done.value
            sums["loss"] += value * done.weight
            sums["weight"] += done.weight
            for key, v in done.extra.items():
                sums[key] = sums.get(key, 0.0) + v
            progress.step(done.rows, value)
            state["step"] += 1
            if state["step"] >= schedule.max_steps:
                break
        if sched is not None and schedule.scheduler_per == "epoch":
            sched.step()
        val_loss = validate() if validate else math.nan
        totals = dict(zip(sums, distributed.total(*sums.values())))
        n_steps = max(1, progress.step_n)
        row = {"epoch": epoch, "train_loss": totals.pop("loss") / max(1.0, totals.pop("weight")), "val_loss": val_loss,
               **{k: v / n_steps for k, v in totals.items()}}
        state["history"].append(row)
        score = val_loss if validate else -epoch  # no validation cells: keep the last epoch
        if score < state["best"]:
            state.update(best=score, best_epoch=epoch, stale=0, best_weights=cpu_weights(model))
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        if checkpoint is not None and rank == 0:
            resume.save(checkpoint, state=state, **streams)
        progress.end_epoch(row["train_loss"], val_loss)  # after the save: an epoch that was logged can be resumed
    if state["best_weights"] is not None:
        model.load_state_dict(state["best_weights"])
    return pd.DataFrame.from_records(state["history"]), state


def cpu_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
