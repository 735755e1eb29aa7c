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
from grouping.rundir.upgrade import upgrade_2_to_3

#: 1: the first layout; 2: adds ``sha256``; 3: the recurrent layer in the updater
#: (``grouping.rundir.upgrade`` reads 2 as 3).
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
DIGEST_KEY = "sha256"
#: Set in a checkpoint whose weights are stored in half precision (a shipped model, written by
#: :func:`grouping.rundir.pretrained.ship`): the dtype's name. Loading casts them back to float32.
STORED_DTYPE_KEY = "weights_dtype"
HALF_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
#: How torch's weights-only unpickler names a global it refused to import (a class, a function).
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+)|Unsupported class ([\w.]+)")


def content_digest(payload: Mapping[str, Any], strict: bool = False) -> str:
    """SHA-256 over every value of ``payload`` except the digest itself, in a canonical order.

    Tensors contribute their dtype, shape and bytes; other values their ``repr``. The walk is
    bounded (:data:`MAX_DEPTH` levels, :data:`MAX_NODES` values); with ``strict`` (a file being
    read) a container met twice (shared or circular references) or a type no checkpoint holds is
    refused too. Each refusal is a :class:`CheckpointShapeError`.
    """
    h = hashlib.sha256()
    _Walk(h, strict).feed({k: v for k, v in payload.items() if k != DIGEST_KEY}, 0)
    return h.hexdigest()


#: The deepest nesting and the most values a checkpoint holds; a real one stays far below both
#: (depth about 8, a few thousand values), and a crafted one with shared or circular references
#: would otherwise make the digest walk run forever or overflow the stack.
MAX_DEPTH = 64
MAX_NODES = 2_000_000
#: The only types a checkpoint holds besides tensors and containers (dict, list, tuple).
PLAIN_TYPES = (str, int, float, bool, type(None))


class CheckpointShapeError(ValueError):
    """A payload whose structure no grouping checkpoint has (too deep, too big, a foreign type)."""


class _Walk:
    """One bounded walk over a payload, feeding a hash."""

    def __init__(self, h: Any, strict: bool) -> None:
        self.h, self.strict, self.left = h, strict, MAX_NODES
        self.seen: set[int] = set()

    def enter(self, value: Any, depth: int) -> None:
        self.left -= 1
        if self.left < 0:
            raise CheckpointShapeError(f"it holds more than {MAX_NODES} values")
        if depth > MAX_DEPTH:
            raise CheckpointShapeError(f"it is nested deeper than {MAX_DEPTH} levels")
        if self.strict and isinstance(value, (dict, list, tuple)):
            if id(value) in self.seen:
                raise CheckpointShapeError("it holds shared or circular references")
            self.seen.add(id(value))

    def feed(self, value: Any, depth: int) -> None:
        self.enter(value, depth)
        h = self.h
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            h.update(b"{")
            for key in sorted(value, key=repr):
                h.update(repr(key).encode())
                self.feed(value[key], depth + 1)
            h.update(b"}")
        elif isinstance(value, (list, tuple)):
            h.update(b"[")
            for item in value:
                self.feed(item, depth + 1)
            h.update(b"]")
        elif isinstance(value, PLAIN_TYPES) or not self.strict:
            h.update(repr(value).encode())
        else:
            raise CheckpointShapeError(
                f"it holds a {type(value).__name__}, which no checkpoint holds"
            )


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
        raise RunDirError(not_a_file(path))
    if torch.device(map_location).type == "meta":
        raise RunDirError(
            f"cannot load {path} onto the meta device, which holds no data; use cpu or cuda"
        )
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
    if payload["format_version"] not in READABLE_VERSIONS:
        raise RunDirError(
            f"{path} has checkpoint format {payload['format_version']!r}; this grouping reads "
            f"formats {', '.join(map(str, READABLE_VERSIONS))}"
        )
    try:
        digest = content_digest(payload, strict=True)
    except (CheckpointShapeError, ValueError, RecursionError) as exc:  # ValueError: a huge int
        raise RunDirError(
            f"{path} is not a grouping checkpoint: {one_line(str(exc), 200)}"
        ) from None
    if payload.get(DIGEST_KEY) != digest:
        raise RunDirError(
            f"{path} is corrupt: its content does not match its sha256 digest; use another copy"
        )
    if payload["format_version"] == 2:
        payload = upgrade_2_to_3(payload)
    return restore_fp32(payload)


def restore_fp32(payload: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint whose weights were stored in half precision (:data:`STORED_DTYPE_KEY`) with
    those weights back in float32, the dtype every model computes in; any other as it is."""
    weights = payload.get("model")
    if STORED_DTYPE_KEY not in payload or not isinstance(weights, dict):
        return payload
    halves = tuple(HALF_DTYPES.values())
    restored = {
        k: v.float() if isinstance(v, torch.Tensor) and v.dtype in halves else v
        for k, v in weights.items()
    }
    return {k: v for k, v in payload.items() if k != STORED_DTYPE_KEY} | {"model": restored}


def not_a_file(path: Path) -> str:
    """Why ``path`` (a checkpoint that is not a regular file) cannot be read, in one line."""
    if path.is_symlink() and not path.exists():
        return f"checkpoint {path} is a link to {os.readlink(path)}, which does not exist"
    if not path.exists():
        return f"checkpoint not found: {path}"
    kind = "a folder" if path.is_dir() else "not a regular file (a device, pipe or socket)"
    link = f" (a link to {os.readlink(path)})" if path.is_symlink() else ""
    return f"checkpoint {path}{link} is {kind}; a checkpoint is a file written by grouping"


def _unreadable(path: Path, exc: Exception) -> RunDirError:
    reason = one_line(str(exc), 200) or type(exc).__name__
    return RunDirError(
        f"cannot read checkpoint {path}: it is truncated, corrupt or not a grouping checkpoint "
        f"({type(exc).__name__}: {reason})"
    )
