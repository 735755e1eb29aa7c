"""Where the commands print: rich consoles that never wrap a line mid-field when piped, and progress
bars that show only on a terminal.

A console is made when a command prints, not at import, so that it sees the stream the command
writes to now (a terminal, a pipe, or click's test runner). Written to a pipe or a file, rich would
assume 80 columns and break ``valid AMI 0.798  ARI`` / ``0.812`` across lines: there, plain lines are
never wrapped (``soft_wrap``) and tables get :data:`PIPE_WIDTH` columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Width of tables written to a pipe or file, where rich would otherwise assume 80 columns.
PIPE_WIDTH = 200


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console on stdout (or stderr) as it is now: a terminal's own width, else lines unwrapped
    and tables :data:`PIPE_WIDTH` wide."""
    probe = Console(stderr=stderr, quiet=quiet)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, quiet=quiet, width=PIPE_WIDTH, soft_wrap=True)


def shows_progress(target: Console, quiet: bool = False) -> bool:
    """Progress bars are for people: an interactive terminal (rich's test, so ``TERM=dumb`` and
    ``TTY_INTERACTIVE=0`` turn them off), and no ``--json`` (``quiet``) whose output a program
    reads."""
    return target.is_interactive and not quiet


class Bar:
    """A progress callback ``(done, total)`` with a way to print a line on stderr above the bar
    (a plain ``click.echo`` there would land inside the bar's line)."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.progress = progress
        self.task = progress.add_task("", total=None) if progress is not None else None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def echo(self, text: str) -> None:
        if self.progress is None:
            click.echo(text, err=True)
        else:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, unit: str = "images", *, quiet: bool = False) -> Iterator[Bar]:
    """A transient bar on stderr for a command that takes more than a few seconds, fed by the
    ``(done, total)`` callback it yields; nothing at all when stderr is not a terminal or ``quiet``
    (so no progress ever mixes into output a program reads)."""
    target = console(stderr=True)
    if not shows_progress(target, quiet):
        yield Bar()
        return
    bar = Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=target,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with bar:
        yield Bar(bar)
