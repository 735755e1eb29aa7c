"""What changes while a run trains, saved in every checkpoint as plain values."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TrainState:
    """Everything that changes during training; saved in every checkpoint as plain values.

    ``epoch`` counts finished epochs; ``stop_reason`` is set once training has ended (the epoch
    limit, early stopping, the time limit, a non-finite validation loss). The ``epoch_*`` fields and
    ``batch`` describe the epoch in progress: ``batch`` batches of epoch ``epoch + 1`` are done, in
    the block order ``epoch_order``. They are non-empty only in a checkpoint written after a stop
    signal, so that a resumed run goes on with batch ``batch + 1`` exactly where it stopped.
    ``threads`` is the CPU thread count the run's probe chose (0 before it chose, or without one)
    and ``thread_rates`` the images/s it measured per count (``grouping.training.threads``).
    """

    epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0
    train_images: int = 0
    stop_reason: str = ""
    batch: int = 0
    epoch_order: list[int] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    epoch_images: int = 0
    epoch_seconds: float = 0.0
    epoch_skipped: int = 0
    threads: int = 0
    thread_rates: dict[int, float] = field(default_factory=dict)

    def start_epoch(self, order: list[int]) -> None:
        self.batch, self.epoch_order, self.epoch_losses = 0, order, []
        self.epoch_images, self.epoch_seconds, self.epoch_skipped = 0, 0.0, 0

    def judge(
        self, valid_loss: float, timed_out: bool, patience: int, epochs: int, minutes: float | None
    ) -> bool:
        """After epoch ``epoch``: keep the best model by validation loss and decide whether
        training stops (spec 7). Returns whether this epoch is the best so far."""
        improved = valid_loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.bad_epochs = valid_loss, self.epoch, 0
        else:
            self.bad_epochs += 1
        if not math.isfinite(valid_loss):
            self.stop_reason = f"validation loss is {valid_loss}"
        elif self.bad_epochs >= patience:
            self.stop_reason = f"early stopping: no better validation loss for {patience} epochs"
        elif timed_out:
            self.stop_reason = f"the time limit of {minutes} minutes is reached"
        elif self.epoch >= epochs:
            self.stop_reason = "epoch limit"
        return improved

    def nonfinite_message(
        self, problem: str, blocks: int, last: Path | None, batch: int | None = None
    ) -> str:
        """The line a run that met a NaN or infinity stops with: where (batch ``batch`` of the
        epoch in progress, the current one by default), what, what is kept."""
        kept = (
            f"the last good checkpoint is {last} (epoch {self.epoch})"
            if self.epoch and last is not None
            else "no epoch had finished, so there is no checkpoint"
        )
        return (
            f"stopped at epoch {self.epoch + 1}, batch {batch or self.batch} of {blocks}: {problem}; "
            f"{kept}; --set train.on_nonfinite=skip skips such batches instead"
        )
