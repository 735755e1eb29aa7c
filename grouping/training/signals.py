"""Graceful stop: SIGINT and SIGTERM ask the trainer to stop after the current batch.

The first signal only sets a flag; the trainer finishes the batch it is on, writes ``last.pt`` and
raises :class:`grouping.errors.Interrupted`. A second SIGINT while it does so interrupts at once
(Python's default ``KeyboardInterrupt``), for a user who really wants out.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from grouping.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The flag the trainer polls after every batch; set by a signal or by code (``request``)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def request(self, signum: int = signal.SIGINT) -> None:
        self.signum = signum


class catch_stop_signals:
    """Route SIGINT and SIGTERM to ``request`` while training; restore the old handlers after.

    Outside the main thread (a notebook's worker, a test runner's thread) signals cannot be caught,
    and the handlers are left alone.
    """

    def __init__(self, request: StopRequest) -> None:
        self.request = request
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        self.request.request(signum)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self.request

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()


class stop_at_once:
    """After training (the test, the figure, the summary): SIGINT or SIGTERM ends the run at once
    with :class:`grouping.errors.Interrupted` and the resume line. Nothing is written that a
    resumed run would not write again: ``last.pt`` already holds the trained model."""

    def __init__(self, path: object, resume_hint: str) -> None:
        self.path = path
        self.hint = resume_hint
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        raise Interrupted(
            f"interrupted by {name} after training, before the run ended: {self.hint}",
            self.path,
            signum,
        )

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
