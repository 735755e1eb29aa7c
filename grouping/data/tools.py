"""``grouping data check`` and ``grouping data export``: validate a data file, freeze a data set.

``check_file`` scans a file in the original HDF5 layout or a ``.npz`` file chunk by chunk and
reports its layout, shapes, dtypes, value and label ranges, the share of background and overlap
pixels, and one line per defect. ``export_dataset`` writes any data set plugin's splits in the
original layout (spec 6.1) through the ``Dataset`` interface only, so a generated set can be frozen,
shared and read back by the ``hdf5`` data set or by the original code.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grouping.config.schema import RunConfig
from grouping.data.files import (
    ORIGINAL_SPLITS,
    SCAN_CHUNK,
    SampleArrays,
    npz_arrays,
    open_h5,
    require_h5py,
)
from grouping.data.values import ValueStats
from grouping.engine.assembly import build_dataset
from grouping.errors import DataError
from grouping.plugin_api.interfaces import SPLITS
from grouping.plugin_api.registry import Registry
from grouping.version import __version__

#: File name endings read as the original HDF5 layout.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


@dataclass
class SplitReport:
    """What a scan found in one split (or in a whole ``.npz`` file)."""

    name: str
    samples: int
    frames: int
    image_shape: tuple[int, int, int]
    features_dtype: str
    groups_dtype: str
    stats: ValueStats

    def as_dict(self) -> dict[str, Any]:
        s = self.stats
        pixels = max(s.pixels, 1)
        return {
            "split": self.name,
            "samples": self.samples,
            "frames": self.frames,
            "image_shape": list(self.image_shape),
            "features_dtype": self.features_dtype,
            "groups_dtype": self.groups_dtype,
            "value_range": [s.value_min, s.value_max],
            "label_range": [s.label_min, s.label_max],
            "binary": s.binary,
            "background_share": s.background / pixels,
            "overlap_share": s.overlap / pixels,
            "objects_max": s.objects_max,
            "nonfinite": s.nonfinite,
        }


@dataclass
class CheckReport:
    """The outcome of ``check_file``: one report per split and every defect, one line each."""

    path: Path
    layout: str
    splits: list[SplitReport] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.defects

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "layout": self.layout,
            "ok": self.ok,
            "splits": [s.as_dict() for s in self.splits],
            "defects": list(self.defects),
        }


def _scan(name: str, arrays: SampleArrays, raw_dtypes: tuple[str, str]) -> tuple[SplitReport, str]:
    """Scan one split chunk by chunk; a read error ends the scan and is returned as a defect."""
    stats = ValueStats()
    problem = ""
    try:
        for features, groups in arrays.chunks():
            stats.add(features, groups)
    except DataError as exc:
        problem = str(exc)
    report = SplitReport(
        name, arrays.samples, arrays.frames, arrays.image_shape, *raw_dtypes, stats=stats
    )
    return report, problem


def check_file(path: Path | str) -> CheckReport:
    """Validate a data file; an unreadable file is a DataError, everything else a listed defect."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        file = open_h5(path)
        report = CheckReport(path, "original HDF5 (T, N, H, W, C)", defects=list(file.defects))
        try:
            for split, arrays in file.splits.items():
                dtypes = (str(arrays.features.dtype), str(arrays.groups.dtype))
                split_report, problem = _scan(ORIGINAL_SPLITS[split], arrays, dtypes)
                report.splits.append(split_report)
                report.defects += [problem] if problem else []
                report.defects += split_report.stats.defects(arrays.where)
        finally:
            file.handle.close()
        return report
    if suffix == ".npz":
        loaded, defects = npz_arrays(path)
        report = CheckReport(path, ".npz (N, [T,] H, W[, C])", defects=defects)
        if loaded is not None:
            dtypes = (str(loaded.features.dtype), str(loaded.groups.dtype))
            split_report, problem = _scan("file", loaded, dtypes)
            report.splits.append(split_report)
            report.defects += [problem] if problem else []
            report.defects += split_report.stats.defects(loaded.where)
        return report
    raise DataError(
        f"cannot check {path}: expected a .npz file or an HDF5 file ({', '.join(HDF5_SUFFIXES)})"
    )


# --------------------------------------------------------------------------------------------------
# export


@dataclass
class ExportResult:
    """What ``export_dataset`` wrote."""

    path: Path
    samples: dict[str, int]
    frames: int
    image_shape: tuple[int, int, int]
    binary: bool
    source: dict[str, Any]


def export_dataset(
    config: RunConfig,
    out: Path | str,
    *,
    registry: Registry | None = None,
    overwrite: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExportResult:
    """Write the config's data set (its sizes, seed and steps + 1 frames) in the original layout.

    ``features`` (T, N, H, W, C) and ``groups`` (T, N, H, W, 1), float32, as the original files;
    the file's attributes record the data's source and whether it is binary. The file is written
    next to ``out`` and renamed into place, so a failed export leaves no partial file.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise DataError(f"cannot write {out}: folder {out.parent} does not exist")
    h5py = require_h5py()
    dataset = build_dataset(config, registry)
    h, w, c = dataset.image_shape
    partial = out.with_name(out.name + ".partial")
    samples: dict[str, int] = {}
    frames = 1
    try:
        with h5py.File(partial, "w") as f:
            for split in SPLITS:
                data = dataset.split(split)
                n, frames = len(data), data.frames
                group = f.create_group(ORIGINAL_SPLITS[split])
                features = group.create_dataset("features", (frames, n, h, w, c), "float32")
                groups = group.create_dataset("groups", (frames, n, h, w, 1), "float32")
                for start in range(0, n, SCAN_CHUNK):
                    stop = min(n, start + SCAN_CHUNK)
                    x, y = data.get(np.arange(start, stop))  # (b, F, H, W, C), (b, F, H, W)
                    features[:, start:stop] = x.numpy().swapaxes(0, 1)
                    groups[:, start:stop] = y.numpy().swapaxes(0, 1)[..., None]
                    if progress is not None:
                        progress(ORIGINAL_SPLITS[split], stop, n)
                samples[ORIGINAL_SPLITS[split]] = n
            f.attrs["source"] = json.dumps(dataset.source())
            f.attrs["binary"] = bool(dataset.binary)
            f.attrs["grouping_version"] = __version__
        os.replace(partial, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return ExportResult(out, samples, frames, (h, w, c), bool(dataset.binary), dataset.source())
