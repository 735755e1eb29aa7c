"""One-line blame when a plugin fails, and the shape check its outputs meet.

A plugin that raises, or returns the wrong type or shape, becomes a :class:`PluginError` that names
the plugin (kind, name and class) and what was expected; the original exception stays chained for a
debugger. The engine uses these once, when a run is assembled (``grouping.engine.contracts``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from torch import Tensor

from grouping.errors import GroupingError, PluginError, one_line


def label(plugin: object) -> str:
    """``updater 'rnn-em'``: how messages name a plugin."""
    kind = getattr(plugin, "kind", "plugin")
    name = getattr(plugin, "name", type(plugin).__name__)
    return f"{kind} {name!r}"


@contextmanager
def blame(plugin: object, action: str) -> Iterator[None]:
    """Turn an exception raised inside ``plugin`` into a one-line :class:`PluginError`.

    Errors that are already ours pass through, and so do torch's own exceptions (running out of
    memory is about the sizes chosen, and activation checkpointing and ``torch.compile`` use
    exceptions for control flow).
    """
    try:
        yield
    except (GroupingError, MemoryError):
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("torch"):
            raise
        cls = type(plugin)
        raise PluginError(
            f"{label(plugin)} ({cls.__module__}.{cls.__qualname__}) failed in {action}: "
            f"{type(exc).__name__}: {one_line(str(exc), 300)}"
        ) from exc


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else f"a {type(t).__name__}"


def check_tensor(
    plugin: object, what: str, value: Any, shape: Sequence[int | None], meaning: str
) -> Tensor:
    """``value`` must be a tensor of ``shape`` (None matches any size); else a one-line error."""
    ok = (
        isinstance(value, Tensor)
        and value.ndim == len(shape)
        and all(s is None or s == v for s, v in zip(shape, value.shape))
    )
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise PluginError(
            f"{label(plugin)} returned {what} of shape {_shape(value)}; expected {meaning} = {want}"
        )
    return value
