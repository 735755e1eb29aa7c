"""Training progress on the terminal: rich progress bars for epochs and batches (on a terminal
only), and one line per epoch with the speed in images/s or sequences/s."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from grouping.cli.output import shows_progress


class ProgressReporter:
    """Shows epochs and batches as rich progress bars and each epoch's record as one line."""

    def __init__(self, console: Console, epochs: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not shows_progress(console),  # a pipe or a file gets the epoch lines alone
        )
        self.epochs_task: TaskID = self.progress.add_task("epochs", total=epochs, info="")
        self.batch_task: TaskID | None = None
        self.unit = "images"

    def __enter__(self) -> ProgressReporter:
        return self  # the bars start with the first epoch: a set-up error stays one line

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def message(self, text: str) -> None:
        self.console.print(text)

    def data_unit(self, unit: str) -> None:
        self.unit = unit

    def epoch_start(self, epoch: int, batches: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        if self.batch_task is not None:
            self.progress.remove_task(self.batch_task)
        self.batch_task = self.progress.add_task(f"epoch {epoch}", total=batches, info="")

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        if self.batch_task is not None:
            self.progress.update(self.batch_task, completed=batch, info=f"loss {loss:8.2f}")

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.progress.advance(self.epochs_task)
        mark = " *" if record.get("best") else ""
        self.console.print(
            f"epoch {record['epoch']:3d}  train loss {record['train_loss']:9.3f}  "
            f"valid loss {record['valid_loss']:9.3f}  valid AMI {record['valid_ami']:.3f}  "
            f"ARI {record['valid_ari']:.3f}  {record['images_per_s']:7.0f} {self.unit}/s{mark}"
        )
