"""Data files checked against their declared sizes before anything is allocated.

A header is cheap to forge: a 661-byte ``.npz`` can declare a petabyte of features, and a 6 KB
HDF5 file a dataset of 10^15 values that reads as fill values. Reading either would exhaust memory
or run for hours, so the declared size is compared with what the file stores first.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from grouping.errors import DataError

#: How much more an HDF5 dataset may declare than it stores: gzip, the best common filter, packs
#: at most about 1000 to 1; a file declaring more holds unwritten (fill) data or lies about its size.
MAX_PACKING = 2000


def _bytes(n: int) -> str:
    """A byte count for people: 5.8 KB, 4.0 TB."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} bytes"  # pragma: no cover


def h5_size_defect(where: str, item: Any) -> str | None:
    """A dataset that declares far more data than the file stores for it (fill values, a forged
    shape): refused before a byte of it is read, since scanning it would run for hours."""
    try:
        declared = int(np.prod(item.shape, dtype=object)) * int(item.dtype.itemsize)
        stored = int(item.id.get_storage_size())
    except (AttributeError, TypeError, ValueError, OSError, RuntimeError):
        return None  # not an h5py dataset (a test's stand-in): nothing to compare
    if declared <= MAX_PACKING * stored + 2**20:
        return None
    return (
        f"{where} declares shape {tuple(item.shape)} ({_bytes(declared)}) but the file stores only "
        f"{_bytes(stored)} of it; the data were never written or the file is damaged"
    )


def npz_size_defects(path: Path, where: str) -> list[str]:
    """Each array of a ``.npz`` whose header declares more bytes than the file holds for it: read
    from the headers alone, before anything is allocated (a 1 KB file can declare a petabyte)."""
    defects = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(f)
                    start = f.tell()
                if dtype.hasobject:
                    continue  # refused when loaded: pickles are never read
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if declared > info.file_size - start:
                    defects.append(
                        f"{where}: {info.filename[:-4]} declares shape {tuple(shape)} {dtype} "
                        f"({_bytes(declared)}) but the file holds {_bytes(info.file_size - start)} "
                        "of it; it is truncated or damaged"
                    )
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path} is not a readable .npz file: {reason}") from None
    return defects
