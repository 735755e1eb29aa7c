"""The learning rate over the run's budget (``train.lr_schedule``).

With a constant rate the quickstart's validation AMI rises for three epochs and then falls, so its
answer depended on how many epochs a machine got through in its minutes. A rate that decays to
zero over the whole budget ends every run at a low rate, however much of it a machine trains.

The budget is the epochs, or the minutes where ``train.max_minutes`` is set and runs out first:
progress is ``max(epochs done / epochs, training seconds / (60 * max_minutes))``, counted per
batch from the :class:`~grouping.training.state.TrainState` a checkpoint holds, so a resumed run
goes on with the rate it stopped at. Without a time limit the rate depends on the epoch and batch
alone, and a resumed run equals an uninterrupted one exactly.

The decay alone does not make the answer the same for every budget: on the quickstart the grouping
peaks after a certain amount of training and then declines while the loss still falls, so a rate
that suits two epochs overshoots over six, and one that suits six leaves two short. With
``train.lr_reference_epochs`` the peak rate falls as 1 / epochs beyond that budget, so every budget
covers about the same area under the schedule (docs/experiments/quickstart-schedule.md).
"""

from __future__ import annotations

import math
import time
from typing import Literal

import torch

from grouping.config.schema import TrainConfig
from grouping.training.state import TrainState

ScheduleKind = Literal["constant", "cosine", "linear"]

__all__ = ["LrSchedule", "ScheduleKind", "factor", "peak"]


def factor(kind: ScheduleKind, progress: float) -> float:
    """The fraction of ``train.lr`` at ``progress`` (0 at the start of the budget, 1 at its end;
    clamped to that range)."""
    p = min(max(progress, 0.0), 1.0)
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    if kind == "linear":
        return 1.0 - p
    return 1.0


def peak(lr: float, epochs: int, reference_epochs: float | None) -> float:
    """The decaying schedule's starting rate: ``lr`` for budgets up to ``reference_epochs``, and
    ``lr * reference_epochs / epochs`` beyond, so the area under the schedule (how far the weights
    move in all) stays that of the reference budget (``train.lr_reference_epochs``)."""
    return lr if reference_epochs is None else lr * min(1.0, reference_epochs / epochs)


class LrSchedule:
    """Sets the optimizer's rate at the start of each batch from the run's progress."""

    def __init__(
        self,
        kind: ScheduleKind,
        lr: float,
        epochs: int,
        max_minutes: float | None,
        reference_epochs: float | None = None,
    ) -> None:
        self.kind, self.epochs, self.max_minutes = kind, epochs, max_minutes
        self.lr = lr if kind == "constant" else peak(lr, epochs, reference_epochs)
        # the training seconds the state had folded in when last seen, and when that was
        self._folded = -1.0
        self._mark = 0.0

    @classmethod
    def for_train(cls, tc: TrainConfig) -> LrSchedule:
        return cls(tc.lr_schedule, tc.lr, tc.epochs, tc.max_minutes, tc.lr_reference_epochs)

    def progress(self, state: TrainState) -> float:
        """How much of the budget is spent before the batch ``state.batch + 1`` of epoch
        ``state.epoch + 1``: the larger of the epoch and the time fractions."""
        blocks = len(state.epoch_order)
        within = state.batch / blocks if blocks else 0.0
        done = (state.epoch + within) / self.epochs
        if self.max_minutes:
            done = max(done, self.seconds(state) / (60.0 * self.max_minutes))
        return done

    def seconds(self, state: TrainState) -> float:
        """Training seconds so far: what the state holds, plus the time since the trainer last
        added to it (validation and checkpoint writing are not training, as in the state)."""
        folded = state.train_seconds + state.epoch_seconds
        now = time.perf_counter()
        if folded != self._folded:  # an epoch ended, a checkpoint was written, or a resume
            self._folded, self._mark = folded, now
        return folded + now - self._mark

    def rate(self, state: TrainState) -> float:
        if self.kind == "constant":
            return self.lr
        return self.lr * factor(self.kind, self.progress(state))

    def apply(self, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
        """Set every parameter group's rate for the next batch (a no-op for ``constant``, which
        leaves the rate a warm start or a checkpoint gave the optimizer as before)."""
        if self.kind == "constant":
            return
        lr = self.rate(state)
        for group in optimizer.param_groups:
            group["lr"] = lr
