"""MNIST from files: a folder of IDX files (plain or gzip) or an ``.npz`` archive like keras'.

A folder is searched in itself, in ``MNIST/raw`` as torchvision leaves it, and in ``raw``, for
``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``t10k-...`` for test, plain or
``.gz``); a ``mnist.npz`` in the folder is the last resort. An ``.npz`` holds ``x_train``/``y_train``
and ``x_test``/``y_test``. Every problem with a file is a one-line ``DataError`` saying what is wrong
and what was expected.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from grouping.errors import DataError
from grouping_plugins.sources.digit_images import (
    FILE_PREFIX,
    DigitImages,
    Split,
    check_counts,
    check_mnist_images,
    read_bytes,
    to_unit_float,
)

#: IDX magic numbers: 0x0803 (unsigned bytes, 3 dims) for images, 0x0801 (1 dim) for labels.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_SUBFOLDERS: tuple[tuple[str, ...], ...] = ((), ("MNIST", "raw"), ("raw",))
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


# --------------------------------------------------------------------------------------- IDX files


def read_idx(path: str | os.PathLike[str], magic: int | None = None) -> np.ndarray:
    """Read one IDX file (plain or gzip) into a numpy array of its declared shape and type.

    ``magic`` is the magic number the caller requires (2051 for MNIST images, 2049 for labels); with
    None any well-formed IDX header is accepted. Multi-byte types come back in native byte order.
    """
    p = Path(path)
    data, was_gz = read_bytes(p)
    what = f"{p} (after gzip decompression)" if was_gz else str(p)
    dims, dtype = _idx_header(data, p, what, magic)
    header = 4 + 4 * len(dims)
    expected = header + int(np.prod(dims, dtype=object)) * dtype.itemsize
    shape = "x".join(map(str, dims))
    if len(data) < expected:
        raise DataError(
            f"truncated IDX file {what}: expected {expected} bytes for shape {shape}, "
            f"found {len(data)}"
        )
    if len(data) > expected:
        raise DataError(
            f"IDX file {what} is too long: expected {expected} bytes for shape {shape}, "
            f"found {len(data)} (trailing data)"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _idx_header(
    data: bytes, p: Path, what: str, magic: int | None
) -> tuple[tuple[int, ...], np.dtype]:
    """The dimensions and element type an IDX file's header declares, checked against ``magic``."""
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
    return dims, np.dtype(_IDX_DTYPES[type_code])


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
    label_names = _candidate_names(FILE_PREFIX[split], "labels")
    labels_file = _first_existing(folder, label_names)
    if labels_file is None:
        raise DataError(
            f"found MNIST {split} images {images_file} but no labels next to them: "
            f"looked for {' or '.join(label_names)} in {folder}"
        )
    images = read_idx(images_file, IMAGES_MAGIC)
    labels = read_idx(labels_file, LABELS_MAGIC)
    check_mnist_images(images, str(images_file))
    check_counts(images, labels, f"{images_file} and {labels_file}")
    return DigitImages(
        images=to_unit_float(images),
        labels=labels.astype(np.int64),
        source={
            "kind": "mnist-idx",
            "path": str(folder),
            "files": [str(images_file), str(labels_file)],
            "split": split,
        },
    )


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
    check_mnist_images(images, f"{path}[{keys[0]}]")
    check_counts(images, labels, f"{path}[{keys[0]}] and [{keys[1]}]")
    return DigitImages(
        images=to_unit_float(images),
        labels=labels.astype(np.int64),
        source={"kind": "mnist-npz", "path": str(path), "keys": list(keys), "split": split},
    )


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


# ----------------------------------------------------------------------------- a folder or a file


def load_mnist_path(path: str | os.PathLike[str], split: Split, origin: str) -> DigitImages:
    """One split of MNIST from a folder of IDX files or an ``.npz`` file (see the module).

    ``origin`` says where the path came from (``path`` or ``$GROUPING_DATA``) in the errors.
    """
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
    image_names = _candidate_names(FILE_PREFIX[split], "images")
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
