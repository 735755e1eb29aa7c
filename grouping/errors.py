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
