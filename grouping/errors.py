"""Errors meant for people: each carries one line that says what is wrong and what is valid.

The CLI prints such an error as one line and exits with code 2, without a traceback. Anything else
that escapes is a bug in grouping or in a plugin, and keeps its traceback.
"""

from __future__ import annotations


class GroupingError(Exception):
    """A problem with the user's input, files or plugins, explained in one line."""


class ConfigError(GroupingError):
    """A config value, preset file or ``--set`` override is invalid."""


class PluginError(GroupingError):
    """A plugin is unknown, registered twice, failed to load or misbehaved."""


class DataError(GroupingError):
    """A data file is missing, truncated or malformed."""


class RunDirError(GroupingError):
    """A run folder or checkpoint cannot be used."""


class RunStopped(Exception):
    """A run ended before its end; the run folder keeps what is needed to inspect or resume it.

    Not a :class:`GroupingError`: the input was fine, something happened during the run. The CLI
    prints the one-line message and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message: str, path: object = None) -> None:
        super().__init__(message)
        self.path = path


class Interrupted(RunStopped):
    """SIGINT or SIGTERM arrived; ``last.pt`` holds the position after the last finished batch."""

    def __init__(self, message: str, path: object = None, signum: int = 2) -> None:
        super().__init__(message, path)
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class NonFiniteError(RunStopped):
    """A loss or gradient was NaN or infinite and ``train.on_nonfinite`` is ``stop``."""

    exit_code = 3


def one_line(text: str, limit: int = 500) -> str:
    """``text`` on one line (newlines folded), at most ``limit`` characters: for error messages."""
    flat = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
