"""Optional TensorBoard logging: every epoch's metrics record also written as TensorBoard scalars.

Needs the ``tensorboard`` package (``pip install 'grouping[tensorboard]'``); without it, asking for
TensorBoard logging is a one-line error before training starts. ``metrics.jsonl`` stays the record
of truth; the event files in ``RUN_DIR/tensorboard/`` mirror it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grouping.errors import GroupingError

#: Sub-folder of the run folder that holds the event files (``tensorboard --logdir RUN_DIR``).
TENSORBOARD_DIR = "tensorboard"
INSTALL_HINT = "pip install 'grouping[tensorboard]'"


class TensorBoardMissing(GroupingError):
    """TensorBoard logging was asked for but the tensorboard package is not installed."""


def require_tensorboard() -> Any:
    """The ``SummaryWriter`` class, or a one-line error that says how to install it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissing(
            f"--tensorboard needs the tensorboard package: {INSTALL_HINT}"
        ) from None
    return SummaryWriter


def summary_writer(logdir: Path) -> Any:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``logdir``, or a one-line error."""
    return require_tensorboard()(log_dir=str(logdir))


class TensorBoardReporter:
    """A :class:`grouping.training.reporting.Reporter` that passes everything on to ``inner`` and writes each
    epoch record's numbers as scalars (tag = the record's key, step = the epoch)."""

    def __init__(self, inner: Any, logdir: Path) -> None:
        self.inner = inner
        self.writer = summary_writer(logdir)

    def message(self, text: str) -> None:
        self.inner.message(text)

    def data_unit(self, unit: str) -> None:
        self.inner.data_unit(unit)

    def epoch_start(self, epoch: int, batches: int) -> None:
        self.inner.epoch_start(epoch, batches)

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        self.inner.batch_end(epoch, batch, loss)

    def epoch_end(self, record: dict[str, Any]) -> None:
        epoch = int(record["epoch"])
        for key, value in record.items():
            if key != "epoch" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), epoch)
        self.writer.flush()
        self.inner.epoch_end(record)

    def close(self) -> None:
        self.writer.close()
