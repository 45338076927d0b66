"""Training a Cisformer translator: Adam, StepLR, gradient clipping at 1, early stopping on validation
cells carved from the training cells, and a checkpoint every epoch (model, optimizer, scheduler,
RNG and early-stopping state) from which an interrupted training resumes to the same weights.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from multiome_assets.models import distributed, resume
from multiome_assets.models.cisformer import Translator, TranslatorConfig
from multiome_assets.models.precision import autocast, training_amp
from multiome_assets.models.profiles import Profile, check_profile
from multiome_assets.models.trainer import Schedule, Step, fit, seeded
from multiome_assets.translation.tokens import (
    VocabCells,
    atac2rna_batch,
    length_buckets,
    rna2atac_batch,
)


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    step_epochs: int  # StepLR: multiply the rate by `gamma` every this many epochs
    gamma: float
    batch_size: int
    patience: int  # epochs without a better validation loss before stopping
    max_epochs: int = 30
    resamples: int = 1  # pseudo-cells per cell per epoch (token sets drawn afresh)
    max_source: int = 2_048  # source tokens per cell at most: expressed genes (rna2atac), active CREs (atac2rna)
    n_queries: int = 2_048  # query tokens per cell: half active, half inactive CREs (rna2atac); genes (atac2rna)
    grad_clip: float = 1.0
    seed: int = 0
    # compute budgets (None: every cell): each epoch a fresh seeded sample of the training cells;
    # the early-stopping validation on a fixed sample of the validation cells
    cells_per_epoch: int | None = None
    max_val_cells: int | None = None
    # at most this many training cells seen in all (epochs x cells per epoch x resamples; None:
    # max_epochs decides): fewer epochs where the cells are many
    max_cells_seen: int | None = None
    max_test_cells: int | None = None  # held-out cells translated and scored per scenario
    # cells whose attention the links read, a seeded sample per cell set: `all`, and each cell type
    # (None: as `all`)
    max_link_cells: int | None = 100
    max_link_cells_per_type: int | None = None


# the reference code's defaults (cisformer/generate_default_config.py): 500 and 100 epochs, stopped
# early on the validation loss
PAPER_TRAINING = {
    "rna2atac": TrainConfig(lr=1e-3, step_epochs=5, gamma=0.9, batch_size=16, patience=5, resamples=4, max_epochs=500),
    "atac2rna": TrainConfig(lr=5e-4, step_epochs=4, gamma=0.6, batch_size=96, patience=2, max_source=10_000,
                            n_queries=3_000, max_epochs=100),
}

# profile -> direction -> (TranslatorConfig sizes, TrainConfig)
PROFILES: dict[Profile, dict[str, tuple[dict, TrainConfig]]] = {
    # the paper's sizes and training, for a GPU
    "paper": {"rna2atac": (dict(d_model=210, n_layers=6, n_heads=6, head_dim=128, head_layers=1), PAPER_TRAINING["rna2atac"]),
              "atac2rna": (dict(d_model=280, n_layers=4, n_heads=7, head_dim=140, head_layers=1), PAPER_TRAINING["atac2rna"])},
    # the bundled datasets in minutes on 2 CPU cores: the paper's optimizer and schedule, a larger
    # rate (tiny models sit longer on the uniform-attention plateau), fewer epochs, and fewer tokens
    # per cell (attention cost grows with queries x keys; ATAC→RNA's gene self-attention with their square);
    # at most 1,000 cells per epoch, 6,000 seen in all, 256 validation cells and 500 test cells per
    # scenario: the bundled datasets (385 and 500 cells) stay whole and train their 12 epochs; a 10x
    # run trains about as long as they do. The links read 100 cells of `all` and 50 of each cell type
    # (docs/performance.md#budgets)
    "cpu": {"rna2atac": (dict(d_model=56, n_layers=2, n_heads=4, head_dim=16),
                         replace(PAPER_TRAINING["rna2atac"], lr=3e-3, resamples=1, max_epochs=12, max_source=512,
                                 n_queries=512, cells_per_epoch=1_000, max_cells_seen=6_000, max_val_cells=256,
                                 max_test_cells=500, max_link_cells_per_type=50)),
            "atac2rna": (dict(d_model=56, n_layers=2, n_heads=4, head_dim=16),
                         replace(PAPER_TRAINING["atac2rna"], lr=1e-2, batch_size=32, max_epochs=12, patience=3,
                                 max_source=2_000, n_queries=1_000, cells_per_epoch=1_000, max_cells_seen=6_000,
                                 max_val_cells=256, max_test_cells=500, max_link_cells_per_type=50))},
}


def translator_config(direction: str, profile: Profile) -> TranslatorConfig:
    check_profile(profile, PROFILES)
    return TranslatorConfig(direction, **PROFILES[profile][direction][0])


def training_config(direction: str, profile: Profile, seed: int) -> TrainConfig:
    check_profile(profile, PROFILES)
    return replace(PROFILES[profile][direction][1], seed=seed)


def make_batch(direction: str, cells: VocabCells, rows: np.ndarray, rng: np.random.Generator, upper: float,
               config: TrainConfig):
    if direction == "rna2atac":
        half = config.n_queries // 2
        return rna2atac_batch(cells, rows, rng, max_genes=config.max_source, n_active=half, n_inactive=half)
    return atac2rna_batch(cells, rows, rng, upper, max_cres=config.max_source, n_genes=config.n_queries)


def validation_sample(config: TrainConfig, val_rows: np.ndarray) -> np.ndarray:
    """The validation cells early stopping, RNA→ATAC's threshold and the baselines' thresholds read:
    a fixed sample of `max_val_cells` (the same whatever the training seed), or all."""
    return _sample(val_rows, config.max_val_cells, seed=2)


def held_out_sample(config: TrainConfig, test_rows: np.ndarray) -> np.ndarray:
    """The held-out cells a scenario translates and scores: a fixed sample of `max_test_cells`, or all."""
    return _sample(test_rows, config.max_test_cells, seed=3)


def _sample(rows: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or len(rows) <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


def epoch_limit(config: TrainConfig, n_train: int) -> int:
    """max_epochs, or fewer where `max_cells_seen` binds (at least one epoch)."""
    if config.max_cells_seen is None:
        return config.max_epochs
    per_epoch = min(n_train, config.cells_per_epoch or n_train) * config.resamples
    return max(1, min(config.max_epochs, config.max_cells_seen // max(per_epoch, 1)))


def source_lengths(direction: str, cells: VocabCells) -> np.ndarray:
    m = cells.rna if direction == "rna2atac" else cells.atac
    return np.diff(m.indptr)


def _epoch_batches(direction, cells, rows, config, rng):
    if config.cells_per_epoch is not None and len(rows) > config.cells_per_epoch:
        rows = np.sort(rng.choice(rows, config.cells_per_epoch, replace=False))
    lengths = source_lengths(direction, cells)[rows]
    return [rows[b] for b in length_buckets(lengths, config.batch_size, rng, config.resamples)]


@torch.no_grad()
def validation_loss(model: Translator, cells: VocabCells, rows: np.ndarray, config: TrainConfig, upper: float,
                    device) -> float:
    """Mean loss per query token over the validation cells, with the same token draws every epoch."""
    model.eval()
    rng = np.random.default_rng(config.seed + 1)
    total, n = 0.0, 0
    for start in range(0, len(rows), config.batch_size):
        batch = make_batch(model.config.direction, cells, rows[start:start + config.batch_size], rng, upper, config).to(device)
        with autocast(device, training_amp(device)):
            _, loss = model(batch.source_index, batch.source_mask, batch.query_index, batch.query_mask,
                            batch.source_value, targets=batch.targets)
        k = int(batch.query_mask.sum())
        total, n = total + float(loss) * k, n + k
    return total / max(n, 1)


def train_translator(model_config: TranslatorConfig, config: TrainConfig, cells: VocabCells,
                     train_rows: np.ndarray, val_rows: np.ndarray, *, upper: float = 1.0, device: str = "cpu",
                     checkpoint_dir: Path | None = None, log=None) -> tuple[Translator, pd.DataFrame]:
    """Train, keep the best-validation weights; resume from `checkpoint_dir/last.pt` when it holds
    an unfinished training of the same configuration. `upper`: the ATAC→RNA bins' upper edge
    (log1p of the training maximum). `log(line)` hears of every epoch, and of long epochs' progress."""
    direction = model_config.direction
    amp = training_amp(device)
    rng = np.random.default_rng(config.seed)
    val_rows = validation_sample(config, val_rows)
    # what a training learns from: its cells, the data they hold, the bins' upper edge
    data = resume.fingerprint(train_rows, val_rows, cells.rna.indptr, cells.rna.indices, cells.rna.data,
                              cells.atac.indptr, cells.atac.indices, cells.cres, np.array([upper]))
    configs = {"model_config": asdict(model_config), "train_config": asdict(config)}
    with seeded(config.seed, device):
        model = Translator(model_config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=config.step_epochs, gamma=config.gamma)

        def step(net, rows) -> Step:
            whole = make_batch(direction, cells, rows, rng, upper, config)  # every process draws the global batch
            part = distributed.shard(len(rows))
            batch = whole.rows(distributed.stand_in(part, len(rows))).to(device)  # weighted 0 when this process has no rows
            with autocast(device, amp):  # bf16 only on a GPU that computes it natively
                _, loss = net(batch.source_index, batch.source_mask, batch.query_index, batch.query_mask,
                              batch.source_value, targets=batch.targets)
            return Step(loss, rows=len(rows[part]), weight=int(whole.query_mask[part].sum()),
                        total=int(whole.query_mask.sum()))

        history, _ = fit(model, opt, sched, rng,
                         Schedule(epoch_limit(config, len(train_rows)), config.patience, grad_clip=config.grad_clip, scheduler_per="epoch"),
                         batches=lambda rng: _epoch_batches(direction, cells, train_rows, config, rng), step=step,
                         validate=lambda: validation_loss(model, cells, val_rows, config, upper, device) if len(val_rows) else None,
                         checkpoint=None if checkpoint_dir is None else checkpoint_dir / "last.pt",
                         configs=configs, data=data, log=log, name=direction)
    return model.eval(), history.reindex(columns=["epoch", "train_loss", "val_loss"])
