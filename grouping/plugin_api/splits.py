"""Splits: how a data set hands the core its samples, addressed by index (``Split``), and the
in-memory kind (``ArraySplit``). Re-exported by ``grouping.plugin_api.interfaces``."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

SplitName = Literal["train", "valid", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitSizes:
    """How many samples each split holds."""

    train: int
    valid: int
    test: int

    def __getitem__(self, split: SplitName) -> int:
        return int(getattr(self, split))


class Split(abc.ABC):
    """One split of a data set, addressed by sample index so that it can live in memory or on disk.

    ``get`` returns features (b, F, H, W, C) float32 in [0, 1] and groups (b, F, H, W) int64, where
    F is the number of stored frames (1 for static data) and group 0 marks background and overlap.
    """

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @property
    @abc.abstractmethod
    def frames(self) -> int:
        """F, frames per sample."""

    @abc.abstractmethod
    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        """Samples at the given indices (sorted or not), as (features, groups)."""


class ArraySplit(Split):
    """A split held in memory as two tensors."""

    def __init__(self, features: Tensor, groups: Tensor) -> None:
        if features.ndim != 5 or groups.shape != features.shape[:4]:
            raise ValueError(
                f"features must be (N, F, H, W, C) and groups (N, F, H, W); "
                f"got {tuple(features.shape)} and {tuple(groups.shape)}"
            )
        self.features = features.to(torch.float32)
        self.groups = groups  # kept in its compact storage dtype; widened per batch in ``get``

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def frames(self) -> int:
        return int(self.features.shape[1])

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.features[idx], self.groups[idx].to(torch.int64)
