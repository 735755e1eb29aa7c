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
file formats, not plugins: the ``hdf5`` and ``arrays`` plugins and :mod:`grouping.data.tools` use
it; the value checks are :mod:`grouping.data.values`.
"""

from __future__ import annotations

import abc
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from grouping.data.sizes import h5_size_defect, npz_size_defects
from grouping.data.values import (
    check_values,
    dtype_defect,
    to_unit,
)
from grouping.errors import DataError
from grouping.plugin_api.interfaces import Split, SplitName

#: The original file's group name of each split (spec 6.1).
ORIGINAL_SPLITS: dict[SplitName, str] = {"train": "training", "valid": "validation", "test": "test"}
#: What to do when h5py is missing.
HDF5_HINT = "install it with: pip install 'grouping[hdf5]'"
#: Samples read at a time when a whole file is scanned (``data check``, ``data export``), and the
#: most bytes of features such a chunk may take.
SCAN_CHUNK = 512
SCAN_BYTES = 64 * 2**20


#: Training samples looked at to tell binary from grey-scale data when no option says which.
DETECT_SAMPLES = 256


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
        """The whole split in chunks of ``SCAN_CHUNK`` samples, fewer where samples are so big
        that a chunk would pass ``SCAN_BYTES``."""
        frames = self.frames if frames is None else frames
        per_sample = 4 * frames * int(np.prod(self.image_shape))  # float32 features
        step = max(1, min(SCAN_CHUNK, SCAN_BYTES // max(per_sample, 1)))
        for start in range(0, self.samples, step):
            yield self.read(start, min(self.samples, start + step), frames)


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
        problem = h5_size_defect(f"{where}/{key}", item)
        if problem:
            defects.append(problem)
    if len(defects) > count:
        return None
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


def npz_arrays(path: Path | str, where: str | None = None) -> tuple[MemoryArrays | None, list[str]]:
    """Load a ``.npz`` file's ``features`` and ``groups`` into sample-first arrays, or defects."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    oversized = npz_size_defects(path, where)
    if oversized:
        return None, oversized
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
