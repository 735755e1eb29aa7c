"""The ``grouping`` command line: one module per command group, assembled in :mod:`grouping.cli.main`.

Each command only parses and prints; the work is done by the Python API.
"""

from grouping.cli.main import cli, main

__all__ = ["cli", "main"]
