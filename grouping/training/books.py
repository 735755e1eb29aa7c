"""The losses of the batches since the trainer last looked, kept on the device until it does.

Reading a loss waits for the device, so the trainer reads them together, every
:data:`LOG_EVERY` batches and wherever it must (a checkpoint, the epoch's end, a stop): one host
sync per interval instead of one per batch (nanoGPT's ``log_interval``). What was not finite is
found then, and the run stops or skips as ``train.on_nonfinite`` says; a skipped step never changed
the weights (the fused Adam's ``found_inf``, ``grouping.training.batch_step``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from grouping.training.state import TrainState

#: Batches between two reads of the losses.
LOG_EVERY = 16


class LossBook:
    """Pending (batch number, norms) rows; ``read`` books them into the state."""

    def __init__(self) -> None:
        self.pending: list[tuple[int, Tensor]] = []
        #: the mean loss of the batches the last read booked (NaN before the first read)
        self.last_loss = math.nan

    def add(self, batch: int, norms: Tensor) -> None:
        """Batch number ``batch`` of the epoch trained; ``norms`` is its (loss, grad norms) row."""
        self.pending.append((batch, norms))

    def due(self) -> bool:
        return len(self.pending) >= LOG_EVERY

    def read(self, state: TrainState, names: list[str], skip: bool) -> tuple[int, str] | None:
        """Book the pending losses into ``state`` (one host sync); with ``skip`` a non-finite
        batch is counted, otherwise the first one is returned as (batch number, what)."""
        if not self.pending:
            return None
        rows = torch.stack([norms for _, norms in self.pending]).tolist()
        batches = [batch for batch, _ in self.pending]
        self.pending = []
        booked = []
        for batch, row in zip(batches, rows):
            if all(math.isfinite(v) for v in row):
                booked.append(row[0])
            elif skip:
                state.epoch_skipped += 1
            else:
                return batch, first_problem(row, names)
        state.epoch_losses.extend(booked)
        if booked:
            self.last_loss = sum(booked) / len(booked)
        return None


def first_problem(norms: list[float], names: list[str]) -> str:
    """What was not finite in a step, from its ``norms`` row: the loss, or the first gradient."""
    if not math.isfinite(norms[0]):
        return f"the loss is {norms[0]}"
    for name, value in zip(names, norms[1:]):
        if not math.isfinite(value):
            return f"the gradient of {name} is not finite"
    return "a gradient is not finite"
