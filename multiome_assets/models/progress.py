"""Training progress for a run log: one line per epoch and, inside a long epoch, at most one line
every `every_s` seconds (epoch, step, mean loss so far, cells/s, time left), so a CPU epoch of many
minutes is not silent and a GPU epoch of a second does not flood the log. `multiome-assets build`
shows the newest of these lines on its progress line."""
from __future__ import annotations

import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """`42 s`, `7 min`, `2.3 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


class TrainingLog:
    def __init__(self, log: Callable[[str], None] | None, name: str, every_s: float = 15.0,
                 max_epochs: int | None = None):
        self.log, self.name, self.every_s, self.max_epochs = log, name, every_s, max_epochs
        self.epoch = 0

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.epoch, self.steps, self.step_n = epoch, steps, 0
        self.cells, self.loss_sum = 0, 0.0
        self.started = self.last_line = self.last_step = time.perf_counter()

    def step(self, cells: int, loss: float) -> None:
        """After each optimizer step: `cells` in the batch, its mean loss."""
        self.step_n += 1
        self.cells += cells
        self.loss_sum += loss * cells
        now = self.last_step = time.perf_counter()
        if self.log is not None and now - self.last_line >= self.every_s:
            self.last_line = now
            self.log(f"{self.name} epoch {self.epoch}{self._of_epochs()} step {self.step_n}/{self.steps}: "
                     f"loss {self.loss_sum / self.cells:.4f}, {self.cells_per_s():.1f} cells/s, {self._left()}")

    def _of_epochs(self) -> str:
        return f"/{self.max_epochs}" if self.max_epochs else ""

    def _left(self) -> str:
        """Time left in this epoch, and at most in all (early stopping may end sooner)."""
        per_step = (self.last_step - self.started) / max(self.step_n, 1)
        epoch_left = per_step * (self.steps - self.step_n)
        text = f"~{duration(epoch_left)} left in the epoch"
        if self.max_epochs and self.max_epochs > self.epoch:
            text += f", ≤ {duration(epoch_left + per_step * self.steps * (self.max_epochs - self.epoch))} in all"
        return text

    def cells_per_s(self) -> float:
        """Training cells per second of this epoch's steps (validation not counted)."""
        return self.cells / max(self.last_step - self.started, 1e-9)

    def end_epoch(self, train_loss: float, val_loss: float) -> None:
        if self.log is not None:
            self.log(f"{self.name} epoch {self.epoch}: train loss {train_loss:.4f}, val {val_loss:.4f}, "
                     f"{self.cells_per_s():.1f} cells/s, {time.perf_counter() - self.started:.0f} s")


class ChunkLog:
    """A long loop over chunks (targets, cells, cCREs): `name: i/n what, ~T left` at most every
    `every_s` seconds, so the step's progress shows in the run log and on build's progress line."""

    def __init__(self, log: Callable[[str], None] | None, name: str, total: int, what: str = "chunks",
                 every_s: float = 15.0):
        self.log, self.name, self.total, self.what, self.every_s = log, name, total, what, every_s
        self.done = 0
        self.started = self.last_line = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.log is not None and now - self.last_line >= self.every_s and self.done < self.total:
            self.last_line = now
            left = (now - self.started) / self.done * (self.total - self.done)
            self.log(f"{self.name}: {self.done}/{self.total} {self.what}, ~{duration(left)} left")
