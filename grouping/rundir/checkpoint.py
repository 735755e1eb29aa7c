"""Checkpoints: written atomically, read without executing code, verified by a content digest.

A checkpoint is a dictionary of tensors and plain values (numbers, strings, lists, dicts) saved by
``torch.save`` and loaded with ``weights_only=True``, so a file from someone else cannot run code on
load. Besides what the trainer puts in it, every checkpoint holds:

* ``format_version``: the layout this module writes (:data:`FORMAT_VERSION`);
* ``sha256``: a digest of the whole content, so a flipped bit that ``torch.load`` would accept
  (the zip container does not check tensor bytes) is still refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from grouping.errors import RunDirError, one_line

#: 1: the first layout; 2: adds ``sha256``.
FORMAT_VERSION = 2
DIGEST_KEY = "sha256"
#: How torch's weights-only unpickler names a global it refused to import (a class, a function).
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|Unsupported class ([\w.]+)")


def content_digest(payload: Mapping[str, Any]) -> str:
    """SHA-256 over every value of ``payload`` except the digest itself, in a canonical order.

    Tensors contribute their dtype, shape and bytes; other values their ``repr``.
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != DIGEST_KEY})
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, Mapping):
        h.update(b"{")
        for key in sorted(value, key=repr):
            h.update(repr(key).encode())
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    else:
        h.update(repr(value).encode())


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk at any moment leaves either the old or the new file, never half of one,
    and no temporary file behind; a failed write is one line naming the file.
    """
    payload = {"format_version": FORMAT_VERSION, **payload}
    payload[DIGEST_KEY] = content_digest(payload)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        kept = "the previous one is unchanged" if path.exists() else "no checkpoint was written"
        raise RunDirError(
            f"cannot write checkpoint {path}: {exc.strerror or exc}; {kept}"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
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
    """A checkpoint written by :func:`save_checkpoint`, or a one-line error.

    Refuses a missing file, a truncated or foreign file, one whose pickle would build objects other
    than tensors and plain values (loading those could run code), another format version, and one
    whose content does not match its digest.
    """
    if not path.is_file():
        raise RunDirError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols: we refuse
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSAFE_GLOBAL.search(str(exc))
        if found:  # the restricted unpickler met a callable: a payload that would run code
            raise RunDirError(
                f"refused to load {path}: it holds objects other than tensors and plain values "
                f"({found.group(1) or found.group(2)}), and loading them could run code; only grouping checkpoints "
                "are read"
            ) from None
        raise _unreadable(path, exc) from None
    except Exception as exc:
        raise _unreadable(path, exc) from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise RunDirError(f"{path} is not a grouping checkpoint (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise RunDirError(
            f"{path} has checkpoint format {payload['format_version']!r}; this grouping reads "
            f"format {FORMAT_VERSION}"
        )
    if payload.get(DIGEST_KEY) != content_digest(payload):
        raise RunDirError(
            f"{path} is corrupt: its content does not match its sha256 digest; use another copy"
        )
    return payload


def _unreadable(path: Path, exc: Exception) -> RunDirError:
    reason = one_line(str(exc), 200) or type(exc).__name__
    return RunDirError(
        f"cannot read checkpoint {path}: it is truncated, corrupt or not a grouping checkpoint "
        f"({type(exc).__name__}: {reason})"
    )
