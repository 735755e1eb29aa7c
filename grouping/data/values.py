"""The values a data file holds: range and dtype checks, binary detection, and statistics
gathered chunk by chunk, so a 50k-sequence file is checked without being loaded whole."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from grouping.errors import DataError

#: Largest label accepted: labels are stored as float32 in the original layout, which holds every
#: integer exactly only up to 2**24.
MAX_LABEL = 2**24


#: Objects per frame are counted only for labels below this (a table per frame).
COUNTED_LABELS = 256


def to_unit(features: np.ndarray) -> np.ndarray:
    """Features as float32: floats as they are, bool as 0/1, unsigned bytes scaled by 1/255."""
    if features.dtype == np.uint8:
        return features.astype(np.float32) / np.float32(255.0)
    return features.astype(np.float32, copy=False)


def is_binary(features: np.ndarray) -> bool:
    """True when every value is exactly 0 or 1 (Bernoulli data)."""
    return bool(np.all((features == 0) | (features == 1)))


def dtype_defect(what: str, dtype: np.dtype) -> str | None:
    """Features and groups must be numbers (bool, integer or float)."""
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        return None
    return f"{what} has dtype {dtype}; expected a number type (float32 as in the original files)"


@dataclass
class ValueStats:
    """Running value statistics of features and groups over chunks of samples."""

    samples: int = 0
    pixels: int = 0  # pixels per frame summed over samples and frames
    nonfinite: int = 0
    value_min: float = math.inf
    value_max: float = -math.inf
    label_min: float = math.inf
    label_max: float = -math.inf
    non_integer: int = 0
    background: int = 0  # label 0 and every channel 0
    overlap: int = 0  # label 0 where some channel is not 0
    binary: bool = True
    objects_max: int = 0  # most distinct non-zero labels in one frame

    def add(self, features: np.ndarray, groups: np.ndarray) -> None:
        """Add a chunk: features (b, F, H, W, C) after ``to_unit``, groups (b, F, H, W) raw."""
        self.samples += features.shape[0]
        self.pixels += groups.size
        finite = np.isfinite(features)
        self.nonfinite += int(features.size - np.count_nonzero(finite))
        if finite.any():
            values = features[finite]
            self.value_min = min(self.value_min, float(values.min()))
            self.value_max = max(self.value_max, float(values.max()))
        self.binary = self.binary and is_binary(features)
        labels = groups.astype(np.float64, copy=False)
        if labels.size:
            self.label_min = min(self.label_min, float(np.nanmin(labels)))
            self.label_max = max(self.label_max, float(np.nanmax(labels)))
        self.non_integer += int(np.count_nonzero(labels != np.round(labels)))
        zero = labels == 0
        dark = ~np.any(features != 0, axis=-1)  # (b, F, H, W)
        self.background += int(np.count_nonzero(zero & dark))
        self.overlap += int(np.count_nonzero(zero & ~dark))
        countable = self.non_integer == 0 and 0 <= self.label_min <= self.label_max < COUNTED_LABELS
        if labels.size and countable:
            frame_labels = labels.reshape(-1, labels.shape[-2] * labels.shape[-1]).astype(np.int64)
            present = np.zeros((frame_labels.shape[0], COUNTED_LABELS), dtype=bool)
            present[np.arange(frame_labels.shape[0])[:, None], frame_labels] = True
            self.objects_max = max(self.objects_max, int(present[:, 1:].sum(1).max()))

    def defects(self, where: str) -> list[str]:
        """One line for each problem found so far, prefixed by ``where``."""
        out = []
        if self.nonfinite:
            out.append(f"{where}: features hold {self.nonfinite} NaN or infinite values")
        if self.value_min < 0 or self.value_max > 1:
            out.append(
                f"{where}: features range over [{self.value_min:g}, {self.value_max:g}]; "
                "they must lie in [0, 1] (uint8 files are scaled by 1/255)"
            )
        if self.non_integer:
            out.append(f"{where}: groups hold {self.non_integer} non-integer labels")
        if self.label_min < 0 or self.label_max > MAX_LABEL:
            out.append(
                f"{where}: labels range over [{self.label_min:g}, {self.label_max:g}]; "
                f"they must be integers in [0, {MAX_LABEL}] (0 = background and overlap)"
            )
        return out


def check_values(features: np.ndarray, groups: np.ndarray, where: str) -> None:
    """Raise the first value defect of one batch as a DataError."""
    stats = ValueStats()
    stats.add(features, groups)
    problems = stats.defects(where)
    if problems:
        raise DataError(problems[0])
