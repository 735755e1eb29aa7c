"""Splits kept in device memory as rendered (``train.data_on_device``), and the run's splits as the
trainer reads them.

A data set renders its samples on the CPU batch by batch (flying shapes: ~19 ms of numpy per batch of
64 sequences), and every batch then crosses to the GPU. A :class:`ResidentSplit` keeps each sample
once it has been rendered, in the device's memory, as uint8 (a pixel in [0, 1] is stored as
round(255 x), which is exact for binary data and for data already on the 1/255 grid; a split with
other values is kept in float32 instead): flying shapes' 50,000 x 21 x 28 x 28 training sequences
take 0.82 GB. Batches are then a gather on the device. It fills itself on first use, so the first
epoch renders what it trains on, as before, and every later epoch renders nothing; :meth:`fill`
renders it all at once. A sample comes back exactly as the data set rendered it, so a run trains on
the same numbers whether its data are resident or not.

Groups are kept where they are scored (validation, test), not for training, whose batches get a
broadcast zero in their place: the trainer never reads them, and copying them cost 8.4 MB per batch.

On the CPU the same class is the cache of a split rendered on demand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from grouping.plugin_api.interfaces import ArraySplit, Split, SplitName

#: ``auto``: the resident splits of a run take at most this share of the GPU's memory together.
GPU_SHARE = 0.25
#: ``auto`` on the CPU: the cached splits take at most this share of the memory available.
CPU_SHARE = 0.10
#: Samples rendered per call by :meth:`ResidentSplit.fill`.
FILL_CHUNK = 512


def _exact_uint8(features: Tensor) -> Tensor | None:
    """``features`` as round(255 x) in uint8 when that decodes to exactly the same values."""
    q = (features * 255).round_().clamp_(0, 255).to(torch.uint8)
    return q if torch.equal(decode(q), features) else None


def decode(stored: Tensor) -> Tensor:
    """Stored features -> float32 in [0, 1]: uint8 / 255, or float32 as kept."""
    return stored.to(torch.float32).div_(255) if stored.dtype == torch.uint8 else stored


def device_index(index: np.ndarray, device: torch.device) -> Tensor:
    """Sample indices on ``device``; to a GPU from pinned memory, without waiting for it."""
    idx = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
    if device.type == "cuda":
        return idx.pin_memory().to(device, non_blocking=True)
    return idx.to(device)


def no_groups(features: Tensor, device: torch.device | None = None) -> Tensor:
    """The groups of a training batch, which nobody reads: a broadcast zero on ``device`` (else
    the features'), no memory and no copy."""
    zero = torch.zeros((), dtype=torch.int64, device=device or features.device)
    return zero.expand(features.shape[:4])


class ResidentSplit(Split):
    """``base``'s samples kept on ``device`` once rendered; with ``groups`` False, none kept."""

    def __init__(self, base: Split, device: torch.device, groups: bool = True) -> None:
        self.base, self.device = base, device
        n = len(base)
        features, labels = base.get(np.arange(min(n, 1)))
        self.features = torch.empty((n, *features.shape[1:]), dtype=torch.uint8, device=device)
        self.groups = (
            torch.empty((n, *labels.shape[1:]), dtype=torch.uint8, device=device)
            if groups
            else None
        )
        self.filled = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.filled)

    @property
    def frames(self) -> int:
        return self.base.frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        index = np.asarray(index, dtype=np.int64)
        missing = np.unique(index[~self.filled[index]])
        if missing.size:
            self._store(missing, *self.base.get(missing))
        idx = device_index(index, self.device)
        features = decode(self.features[idx])
        if self.groups is None:
            return features, no_groups(features)
        return features, self.groups[idx].to(torch.int64)

    def fill(self, chunk: int = FILL_CHUNK) -> ResidentSplit:
        """Render every sample not yet kept, ``chunk`` at a time."""
        todo = np.flatnonzero(~self.filled)
        for start in range(0, todo.size, chunk):
            part = todo[start : start + chunk]
            self._store(part, *self.base.get(part))
        return self

    def _store(self, index: np.ndarray, features: Tensor, groups: Tensor) -> None:
        """Keep the rendered samples at ``index``: uint8 while exact, else float32 from now on."""
        idx = device_index(index, self.device)
        stored = _exact_uint8(features) if self.features.dtype == torch.uint8 else None
        if stored is None:
            if self.features.dtype == torch.uint8:  # values off the 1/255 grid: keep float32
                self.features = decode(self.features)
            stored = features.to(torch.float32)
        self.features[idx] = stored.to(self.device)
        if self.groups is not None:
            small = bool(groups.min() >= 0) and bool(groups.max() <= 255)
            if self.groups.dtype == torch.uint8 and not small:
                self.groups = self.groups.to(torch.int64)
            self.groups[idx] = groups.to(self.groups.dtype).to(self.device)
        self.filled[index] = True


class FeaturesOnly(Split):
    """``base`` for training: its features as rendered, its groups a broadcast zero on ``device``."""

    def __init__(self, base: Split, device: torch.device) -> None:
        self.base, self.device = base, device

    def __len__(self) -> int:
        return len(self.base)

    @property
    def frames(self) -> int:
        return self.base.frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        features, _ = self.base.get(index)
        return features, no_groups(features, self.device)


class _First(Split):
    """The first ``n`` samples of ``base``."""

    def __init__(self, base: Split, n: int) -> None:
        self.base, self.n = base, n

    def __len__(self) -> int:
        return self.n

    @property
    def frames(self) -> int:
        return self.base.frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        return self.base.get(index)


def available_bytes(device: torch.device) -> int:
    """Memory a device has for resident data: a GPU's total, the host's available (0: unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    if device.type != "cpu":
        return 0
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def resident_bytes(split: Split, groups: bool) -> int:
    """What ``split`` takes resident in uint8: features, and groups where kept."""
    features, labels = split.get(np.arange(min(len(split), 1)))
    per_sample = math.prod(features.shape[1:]) + (math.prod(labels.shape[1:]) if groups else 0)
    return len(split) * per_sample


class RunSplits:
    """A run's splits as its trainer reads them: resident where ``train.data_on_device`` says (see
    the module docstring), the training split without its groups."""

    def __init__(
        self, source: Callable[[SplitName], Split], setting: str | bool, device: torch.device
    ) -> None:
        self.source, self.setting, self.device = source, setting, device
        self.splits: dict[tuple[SplitName, int | None], Split] = {}
        self.used = 0  # bytes resident so far

    def split(self, name: SplitName, first: int | None = None) -> Split:
        """Split ``name`` (its first ``first`` samples where given, as scoring reads them)."""
        key = (name, first)
        if key not in self.splits:
            self.splits[key] = self._placed(name, first)
        return self.splits[key]

    def _placed(self, name: SplitName, first: int | None) -> Split:
        base = self.source(name)
        in_memory = isinstance(base, ArraySplit)
        if first is not None and first < len(base):
            base = _First(base, first)
        groups = name != "train"
        size = resident_bytes(base, groups)
        if not self.resident(in_memory, size):
            return base if groups else FeaturesOnly(base, self.device)
        self.used += size
        return ResidentSplit(base, self.device, groups)

    def resident(self, in_memory: bool, size: int) -> bool:
        """Whether a split of ``size`` bytes resident is kept in device memory; ``in_memory``: it
        is already an in-memory array, which a CPU cache would only copy."""
        if self.setting is True or self.setting is False:
            return self.setting
        if self.device.type == "cuda":
            return self.used + size <= GPU_SHARE * available_bytes(self.device)
        if self.device.type == "cpu" and not in_memory:
            return self.used + size <= CPU_SHARE * available_bytes(self.device)
        return False
