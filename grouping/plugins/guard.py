"""Checks where a plugin's output enters the core, and one-line blame when a plugin fails.

Shapes are asserted at the boundaries (data set output, noise output, updater output, E-step) and
nowhere else. A plugin that raises, or returns the wrong type or shape, becomes a
:class:`PluginError` that names the plugin (kind, name and class) and what was expected; the
original exception stays chained for a debugger.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from grouping.errors import DataError, GroupingError, PluginError, one_line
from grouping.plugins.interfaces import Dataset, Likelihood, Noise, Split, SplitName


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


def check_batch(plugin: object, what: str, value: Any, n: int) -> Tensor:
    """``value`` must be a tensor with ``n`` rows (one per copy); its other axes are the plugin's."""
    if not (isinstance(value, Tensor) and value.ndim >= 1 and value.shape[0] == n):
        raise PluginError(
            f"{label(plugin)} returned {what} of shape {_shape(value)}; expected (N, ...) with "
            f"N = {n} rows, one per component copy"
        )
    return value


def apply_noise(noise: Noise, x: Tensor, generator: torch.Generator) -> Tensor:
    """The noise plugin's corrupted copy of ``x``, checked to keep its shape and dtype."""
    with blame(noise, "__call__"):
        out = noise(x, generator)
    check_tensor(noise, "noisy inputs", out, tuple(x.shape), "the input's shape")
    if out.dtype != x.dtype:
        raise PluginError(f"{label(noise)} returned {out.dtype} inputs; expected {x.dtype}")
    return out


class CheckedSplit(Split):
    """A data set's split whose every batch is checked against the data set's ``image_shape``."""

    def __init__(
        self, dataset: Dataset, name: SplitName, inner: Split, likelihood: Likelihood | None = None
    ) -> None:
        self.dataset = dataset
        self.name = name
        self.inner = inner
        self.likelihood = likelihood
        with blame(dataset, f"split({name!r})"):
            self._len = len(inner)
            self._frames = int(inner.frames)
            self._image = tuple(dataset.image_shape)

    def __len__(self) -> int:
        return self._len

    @property
    def frames(self) -> int:
        return self._frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        where = f"split({self.name!r}).get"
        with blame(self.dataset, where):
            out = self.inner.get(index)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise PluginError(
                f"{label(self.dataset)} returned {type(out).__name__} from {where}; "
                "expected a tuple (features, groups)"
            )
        features, groups = out
        b, (h, w, c) = len(index), self._image
        check_tensor(
            self.dataset, f"features from {where}", features, (b, self._frames, h, w, c),
            "(batch, frames, H, W, C)",
        )  # fmt: skip
        check_tensor(
            self.dataset, f"groups from {where}", groups, (b, self._frames, h, w),
            "(batch, frames, H, W)",
        )  # fmt: skip
        if not features.is_floating_point() or groups.is_floating_point():
            raise PluginError(
                f"{label(self.dataset)} returned features of {features.dtype} and groups of "
                f"{groups.dtype} from {where}; expected floating features and integer groups"
            )
        self._check_values(features, groups, where)
        return features, groups

    def _check_values(self, features: Tensor, groups: Tensor, where: str) -> None:
        """Features finite and in the likelihood's support (within [0, 1]); groups >= 0."""
        lo, hi = self.likelihood.support if self.likelihood is not None else (0.0, 1.0)
        lo, hi = max(lo, 0.0), min(hi, 1.0)
        f_min, f_max = (float(v) for v in torch.aminmax(features)) if features.numel() else (0, 0)
        if not (lo <= f_min and f_max <= hi):  # also false for NaN
            who = f" ({label(self.likelihood)} needs them)" if self.likelihood else ""
            raise DataError(
                f"{label(self.dataset)} returned features from {where} outside [{lo:g}, {hi:g}]"
                f"{who}: min {f_min:g}, max {f_max:g}; scale the data to [0, 1] (0-255 images: "
                "divide by 255) and remove NaN or infinite values"
            )
        g_min = int(groups.min()) if groups.numel() else 0
        if g_min < 0:
            raise DataError(
                f"{label(self.dataset)} returned groups from {where} below 0 (min {g_min}); "
                "groups are 0 for background and overlap, 1..n for objects"
            )


def checked_split(
    dataset: Dataset, name: SplitName, likelihood: Likelihood | None = None
) -> CheckedSplit:
    with blame(dataset, f"split({name!r})"):
        inner = dataset.split(name)
    if not isinstance(inner, Split):
        raise PluginError(
            f"{label(dataset)} returned {type(inner).__name__} from split({name!r}); "
            "expected a grouping.plugins.interfaces.Split"
        )
    return CheckedSplit(dataset, name, inner, likelihood)


def nonfinite(loss: Tensor, model: nn.Module) -> str | None:
    """What is not finite after ``backward``: the loss, or the first parameter gradient; else None.

    One device sync for all gradients.
    """
    if not bool(torch.isfinite(loss.detach())):
        return f"the loss is {float(loss.detach())}"
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
    if not named:
        return None
    finite = torch.stack([torch.isfinite(g).all() for _, g in named])
    if bool(finite.all()):
        return None
    first = int((~finite).nonzero()[0, 0])
    return f"the gradient of {named[first][0]} is not finite"
