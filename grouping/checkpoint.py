"""Checkpoints: written atomically, read without executing code.

A checkpoint is a dictionary of tensors and plain values saved by ``torch.save`` and loaded with
``weights_only=True``, so a file from someone else cannot run code on load.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from grouping.errors import RunDirError

FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk at any moment leaves either the old or the new file, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not every platform can open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`, or a one-line error."""
    if not path.is_file():
        raise RunDirError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(
            f"cannot read checkpoint {path}: it is truncated, corrupt or not a grouping "
            f"checkpoint ({reason[:200]})"
        ) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise RunDirError(f"{path} is not a grouping checkpoint (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise RunDirError(
            f"{path} has checkpoint format {payload['format_version']}; this grouping reads "
            f"format {FORMAT_VERSION}"
        )
    return payload
