"""How training reports progress: a protocol the CLI implements, and a silent default."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    """Receives progress; the CLI shows it, the Python API may ignore it."""

    def message(self, text: str) -> None: ...
    def data_unit(self, unit: str) -> None: ...  # "images" or "sequences": what speeds count
    def epoch_start(self, epoch: int, batches: int) -> None: ...
    def batch_end(self, epoch: int, batch: int, loss: float) -> None: ...
    def epoch_end(self, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def message(self, text: str) -> None:
        pass

    def data_unit(self, unit: str) -> None:
        pass

    def epoch_start(self, epoch: int, batches: int) -> None:
        pass

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        pass

    def epoch_end(self, record: dict[str, Any]) -> None:
        pass
