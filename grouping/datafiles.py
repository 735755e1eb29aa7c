"""Data files: the original N-EM HDF5 layout (spec 6.1) and ``.npz`` arrays, read lazily and checked.

Both formats hold ``features`` in [0, 1] and integer ``groups`` (0 = background and overlap); they
differ in axis order:

* original HDF5: groups ``training``, ``validation``, ``test``, each with ``features``
  (T, N, H, W, C) and ``groups`` (T, N, H, W, 1) or (T, N, H, W), float32 in the original files;
* ``.npz``: ``features`` (N, H, W[, C]) for images or (N, T, H, W[, C]) for sequences and
  ``groups`` (N, H, W) or (N, T, H, W); the rank of ``groups`` says which.

Every reader here yields samples first, (b, F, H, W, C) and (b, F, H, W), as the ``Split``
interface does. Problems come back as one-line defect strings, so that ``grouping data check`` can
list them all and a data set plugin can raise the first as a :class:`DataError`. This module knows
file formats, not plugins: the ``hdf5`` and ``arrays`` plugins and ``grouping.data_tools`` use it.
"""

from __future__ import annotations

import abc
import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from grouping.errors import DataError
from grouping.interfaces import Split, SplitName

#: The original file's group name of each split (spec 6.1).
ORIGINAL_SPLITS: dict[SplitName, str] = {"train": "training", "valid": "validation", "test": "test"}
#: Largest label accepted: labels are stored as float32 in the original layout, which holds every
#: integer exactly only up to 2**24.
MAX_LABEL = 2**24
#: Objects per frame are counted only for labels below this (a table per frame).
COUNTED_LABELS = 256
#: Samples read at a time when a whole file is scanned (``data check``, ``data export``).
SCAN_CHUNK = 512
#: Training samples looked at to tell binary from grey-scale data when no option says which.
DETECT_SAMPLES = 256
#: What to do when h5py is missing.
HDF5_HINT = "install it with: pip install 'grouping[hdf5]'"


def require_h5py() -> ModuleType:
    """The h5py module, or a one-line error that says how to get it."""
    try:
        import h5py
    except ImportError:
        raise DataError(f"reading and writing HDF5 files needs h5py; {HDF5_HINT}") from None
    return h5py


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (h5py and zipfile messages can run over several)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------
# values


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


# --------------------------------------------------------------------------------------------------
# readers: one split's samples, first axis samples


class SampleArrays(abc.ABC):
    """One split of a file as samples: ``read`` gives features (b, F, H, W, C) float32 and raw groups
    (b, F, H, W). Subclasses hold the storage; ``frames`` is how many the file stores per sample."""

    where: str
    samples: int
    frames: int
    image_shape: tuple[int, int, int]

    @abc.abstractmethod
    def read(self, start: int, stop: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples ``start`` to ``stop`` (first ``frames`` frames): features and raw groups."""

    def chunks(self, frames: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The whole split in chunks of ``SCAN_CHUNK`` samples."""
        frames = self.frames if frames is None else frames
        for start in range(0, self.samples, SCAN_CHUNK):
            yield self.read(start, min(self.samples, start + SCAN_CHUNK), frames)


class MemoryArrays(SampleArrays):
    """Arrays already in sample-first layout: features (N, F, H, W, C), groups (N, F, H, W)."""

    def __init__(self, features: np.ndarray, groups: np.ndarray, where: str) -> None:
        self.features, self.groups, self.where = features, groups, where
        self.samples, self.frames = int(features.shape[0]), int(features.shape[1])
        h, w, c = (int(s) for s in features.shape[2:])
        self.image_shape = (h, w, c)

    def read(self, start: int, stop: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        return to_unit(self.features[start:stop, :frames]), self.groups[start:stop, :frames]


class H5Arrays(SampleArrays):
    """One split of an original-layout file, read from disk on demand (time-major on disk)."""

    def __init__(self, features: Any, groups: Any, where: str) -> None:
        self.features, self.groups, self.where = features, groups, where
        t, n, h, w, c = (int(s) for s in features.shape)
        self.samples, self.frames, self.image_shape = n, t, (h, w, c)

    def _load(self, key: Any) -> tuple[np.ndarray, np.ndarray]:
        try:
            features = self.features[key]  # (F, b, H, W, C)
            groups = self.groups[key]  # (F, b, H, W[, 1])
        except (OSError, RuntimeError, KeyError) as exc:
            raise DataError(f"{self.where}: cannot read the data: {first_line(exc)}") from None
        if groups.ndim == 5:
            groups = groups[..., 0]
        return to_unit(np.ascontiguousarray(features.swapaxes(0, 1))), np.ascontiguousarray(
            groups.swapaxes(0, 1)
        )

    def read(self, start: int, stop: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
        return self._load((slice(0, frames), slice(start, stop)))

    def take(self, index: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples at any indices. Consecutive ascending indices (the trainer's batches) are one
        slice; others are read sorted and unique, as h5py requires, then put back in order."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and np.all(np.diff(index) == 1):
            return self.read(int(index[0]), int(index[-1]) + 1, frames)
        unique, inverse = np.unique(index, return_inverse=True)
        features, groups = self._load((slice(0, frames), list(unique)))
        return features[inverse], groups[inverse]


# --------------------------------------------------------------------------------------------------
# the original HDF5 layout


@dataclass
class H5File:
    """An original-layout file opened for reading: its splits and its structural defects."""

    path: Path
    handle: Any = None
    splits: dict[SplitName, H5Arrays] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)

    def raise_first(self) -> None:
        if self.defects:
            raise DataError(self.defects[0])


def _h5_split(handle: Any, path: Path, group_name: str, defects: list[str]) -> H5Arrays | None:
    where = f"{path}: {group_name}"
    if group_name not in handle:
        defects.append(
            f"{path}: no group {group_name!r}; the original layout has groups training, "
            "validation and test, each with datasets features and groups"
        )
        return None
    group = handle[group_name]
    found = []
    for key in ("features", "groups"):
        item = group.get(key) if hasattr(group, "get") else None
        if item is None or not hasattr(item, "shape"):
            defects.append(f"{where}: no dataset {key!r}; each split holds features and groups")
        else:
            found.append(item)
    if len(found) < 2:
        return None
    features, groups = found
    count = len(defects)
    for key, item in (("features", features), ("groups", groups)):
        problem = dtype_defect(f"{where}/{key}", item.dtype)
        if problem:
            defects.append(problem)
    if features.ndim != 5:
        defects.append(
            f"{where}/features has rank {features.ndim} {tuple(features.shape)}; "
            "expected (T, N, H, W, C)"
        )
    elif not (
        (groups.ndim == 5 and groups.shape[4] == 1 and groups.shape[:4] == features.shape[:4])
        or (groups.ndim == 4 and groups.shape == features.shape[:4])
    ):
        defects.append(
            f"{where}/groups has shape {tuple(groups.shape)}; expected (T, N, H, W, 1) "
            f"matching features {tuple(features.shape)}"
        )
    elif min(features.shape) == 0:
        defects.append(f"{where}/features is empty: {tuple(features.shape)}")
    if len(defects) > count:
        return None
    return H5Arrays(features, groups, where)


def open_h5(path: Path | str) -> H5File:
    """Open an original-layout file and check its structure; reads no sample data."""
    path = Path(path)
    h5py = require_h5py()
    out = H5File(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        out.handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file: {first_line(exc)}") from None
    out.attrs = dict(out.handle.attrs)
    for split, group_name in ORIGINAL_SPLITS.items():
        arrays = _h5_split(out.handle, path, group_name, out.defects)
        if arrays is not None:
            out.splits[split] = arrays
    shapes = {a.image_shape for a in out.splits.values()}
    if len(shapes) > 1:
        out.defects.append(f"{path}: the splits' images differ in size: {sorted(shapes)}")
    return out


# --------------------------------------------------------------------------------------------------
# .npz arrays


def npz_arrays(path: Path | str, where: str | None = None) -> tuple[MemoryArrays | None, list[str]]:
    """Load a ``.npz`` file's ``features`` and ``groups`` into sample-first arrays, or defects."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("features", "groups") if k not in npz.files]
            if missing:
                found = ", ".join(npz.files) or "nothing"
                return None, [
                    f"{where}: no array {missing[0]!r}; a .npz file holds features and groups "
                    f"(found {found})"
                ]
            features, groups = npz["features"], npz["groups"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file: {first_line(exc)}") from None
    defects = [
        d
        for d in (
            dtype_defect(f"{where}: features", features.dtype),
            dtype_defect(f"{where}: groups", groups.dtype),
        )
        if d
    ]
    if groups.ndim not in (3, 4) or features.ndim not in (groups.ndim, groups.ndim + 1):
        defects.append(
            f"{where}: features {tuple(features.shape)} and groups {tuple(groups.shape)} have the "
            "wrong ranks; expected features (N, H, W[, C]) with groups (N, H, W), or features "
            "(N, T, H, W[, C]) with groups (N, T, H, W)"
        )
    elif features.shape[: groups.ndim] != groups.shape:
        defects.append(
            f"{where}: features {tuple(features.shape)} and groups {tuple(groups.shape)} differ "
            "in their leading axes"
        )
    elif min(features.shape) == 0:
        defects.append(f"{where}: features are empty: {tuple(features.shape)}")
    if defects:
        return None, defects
    if features.ndim == groups.ndim:
        features = features[..., None]  # add the channel axis
    if groups.ndim == 3:
        features, groups = features[:, None], groups[:, None]  # one frame
    return MemoryArrays(features, groups, where), []


# --------------------------------------------------------------------------------------------------
# a lazily read split


class FileSplit(Split):
    """Samples ``[offset, offset + count)`` of a file split, read per batch and checked per batch.

    Batches come as blocks of consecutive samples, so each ``get`` is one contiguous read.
    """

    def __init__(self, arrays: H5Arrays, count: int, frames: int) -> None:
        self.arrays, self.count, self._frames = arrays, count, frames

    def __len__(self) -> int:
        return self.count

    @property
    def frames(self) -> int:
        return self._frames

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor]:
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.count):
            raise IndexError(f"sample index out of range [0, {self.count})")
        features, groups = self.arrays.take(index, self._frames)
        if index.size:
            where = f"{self.arrays.where}, samples {index.min()}-{index.max()}"
            check_values(features, groups, where)
        return torch.from_numpy(features), torch.from_numpy(groups.astype(np.int64))


def frames_to_read(stored: int, needed: int, where: str) -> int:
    """Frames to read per sample: 1 for static data (the engine repeats it), else ``needed``."""
    if stored == 1:
        return 1
    if stored < needed:
        raise DataError(
            f"{where} has {stored} frames per sequence but the run needs {needed} "
            f"(model.steps + 1); use --steps {stored - 1} or fewer"
        )
    return needed


def checked_in_memory(arrays: SampleArrays, count: int, frames: int) -> tuple[Tensor, Tensor]:
    """The first ``count`` samples as tensors, every value checked."""
    features, groups = arrays.read(0, count, frames)
    check_values(features, groups, arrays.where)
    return torch.from_numpy(np.ascontiguousarray(features)), torch.from_numpy(
        groups.astype(np.int64)
    )
