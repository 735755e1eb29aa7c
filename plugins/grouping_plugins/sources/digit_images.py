"""Digit images as every MNIST source returns them, the checks they share, and digit pools."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from grouping.errors import DataError

MNIST_SIDE = 28
Split = Literal["train", "test"]
#: The splits a digit source has; the file-name prefix of each in the MNIST IDX files.
FILE_PREFIX: dict[str, str] = {"train": "train", "test": "t10k"}
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True, eq=False)
class DigitImages:
    """A set of grey-scale digit images with their class labels and where they came from.

    images: (N, H, W) float32 in [0, 1]; labels: (N,) int64; source: plain, printable metadata
    (kind, path, files, split, ...) so that a run can record which digits it used. ``eq`` is off
    because comparing numpy arrays element-wise has no single truth value.
    """

    images: np.ndarray
    labels: np.ndarray
    source: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check the invariants once, so every consumer can rely on them."""
        if self.images.ndim != 3 or self.images.dtype != np.float32:
            raise DataError(
                f"digit images must be an (N, H, W) float32 array, "
                f"got shape {self.images.shape} {self.images.dtype}"
            )
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != np.int64:
            raise DataError(
                f"digit labels must be an ({self.images.shape[0]},) int64 array, "
                f"got shape {self.labels.shape} {self.labels.dtype}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


def check_split(split: str) -> None:
    """A one-line error for a split no digit source has."""
    if split not in FILE_PREFIX:
        raise DataError(f"unknown digit split {split!r}; expected 'train' or 'test'")


def read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's content, decompressed if it is gzip (by magic bytes, or by a ``.gz`` suffix)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    is_gz = raw[:2] == GZIP_MAGIC
    if not is_gz and path.suffix == ".gz":
        raise DataError(
            f"corrupt gzip file {path}: it does not start with the gzip magic bytes 1f 8b "
            f"(found {raw[:2].hex(' ') or 'an empty file'})"
        )
    if not is_gz:
        return raw, False
    try:
        return gzip.decompress(raw), True
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"corrupt or truncated gzip file {path}: {e}") from e


def check_mnist_images(images: np.ndarray, where: str) -> None:
    """MNIST images are (N, 28, 28) uint8 with N > 0; anything else is a one-line error."""
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE) or images.dtype != np.uint8:
        raise DataError(
            f"MNIST images in {where} must be an (N, 28, 28) uint8 array, "
            f"found shape {images.shape} {images.dtype}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{where} contains no images; expected at least one")


def check_counts(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    """One integer label per image, or a one-line error naming ``where``."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"MNIST labels in {where} must be a 1-D integer array, "
            f"found shape {labels.shape} {labels.dtype}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{where} disagree: {images.shape[0]} images but {labels.shape[0]} labels; "
            f"expected one label per image"
        )


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]."""
    out = images.astype(np.float32)
    out /= 255.0
    return out


def pool_indices(total: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """``size`` distinct indices into ``total`` digits, ascending (None: all, in order, no draw)."""
    if size is None:
        return np.arange(total, dtype=np.int64)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise DataError(f"digit pool size must be a positive integer or None (all), got {size!r}")
    if size > total:
        raise DataError(
            f"digit pool of {size} requested but only {total} digits exist; "
            f"choose at most {total} or None for all"
        )
    return np.sort(rng.choice(total, size=int(size), replace=False)).astype(np.int64)


def pool(images: DigitImages, size: int | None, rng: np.random.Generator) -> DigitImages:
    """A pool of ``size`` distinct digits drawn with ``rng`` (None: all), as flying MNIST uses.

    The paper's stages train on pools of 20, 500 and all digits (spec 6.5); the same seed gives the
    same pool. The pool keeps the original order of the digits it picked.
    """
    idx = pool_indices(len(images), size, rng)
    source = {**images.source, "pool_size": len(idx), "pool_of": len(images)}
    if size is None:
        return DigitImages(images=images.images, labels=images.labels, source=source)
    return DigitImages(images=images.images[idx], labels=images.labels[idx], source=source)
