"""The installed distribution's version, in a module of its own so any layer may read it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("grouping")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
