"""The ``hdf5`` data set: a file in the original N-EM layout (spec 6.1), streamed from disk.

The file holds groups ``training``, ``validation`` and ``test``, each with ``features``
(T, N, H, W, C) and ``groups`` (T, N, H, W, 1), float32. T = 1 is static data (the engine repeats the
frame); otherwise the first steps + 1 frames are read. Each split uses its first ``*_size`` samples
(all of them when the file holds fewer). The first samples of each split are checked when the data
set opens; the others are read from disk one batch at a time and checked as they come
(``grouping data check`` checks a whole file first). ``in_memory = true`` loads and checks the used
samples at once instead.
h5py is an optional extra: ``pip install 'grouping[hdf5]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from grouping.data.files import (
    DETECT_SAMPLES,
    FileSplit,
    H5File,
    checked_in_memory,
    frames_to_read,
    open_h5,
)
from grouping.data.values import check_values, is_binary
from grouping.plugins import (
    SPLITS,
    ArraySplit,
    Dataset,
    PluginConfig,
    Register,
    Split,
    SplitName,
    SplitSizes,
    cached_split,
    hookimpl,
)
from grouping_plugins.sources.pixels import likelihood_name

#: Frames per sample looked at when telling binary from grey data.
DETECT_FRAMES = 2


def file_is_binary(file: H5File) -> bool:
    """The file's ``binary`` attribute (``grouping data export`` writes it), else whether the first
    training samples are all 0 or 1. The samples looked at are checked for bad values too."""
    if "binary" in file.attrs:
        return bool(file.attrs["binary"])
    arrays = file.splits["train"]
    features, groups = arrays.read(
        0, min(arrays.samples, DETECT_SAMPLES), min(arrays.frames, DETECT_FRAMES)
    )
    check_values(features, groups, arrays.where)
    return is_binary(features)


class HDF5Dataset(Dataset):
    """Train, validation and test splits of an original-layout HDF5 file."""

    name = "hdf5"
    description = "a file in the original N-EM HDF5 layout (spec 6.1), read lazily from disk"

    class Config(PluginConfig):
        path: str = Field(min_length=1, description="the .h5 file")
        in_memory: bool = Field(
            default=False, description="load the used samples into memory at once"
        )
        binary: bool | None = Field(
            default=None, description="binary pixels (bernoulli) or grey (gaussian); None: detect"
        )

    config: Config

    def __init__(self, config: Config, sizes: SplitSizes, frames: int, seed: int) -> None:
        super().__init__(config, sizes, frames, seed)
        self.file = open_h5(config.path)
        self.file.raise_first()
        self.counts = {s: min(sizes[s], self.file.splits[s].samples) for s in SPLITS}
        self.read_frames = {
            s: frames_to_read(self.file.splits[s].frames, frames, self.file.splits[s].where)
            for s in SPLITS
        }
        for name in SPLITS:  # the first samples of each split, so a bad file fails before training
            arrays = self.file.splits[name]
            head = min(self.counts[name], DETECT_SAMPLES)
            check_values(*arrays.read(0, head, self.read_frames[name]), arrays.where)
        self._binary = config.binary

    @classmethod
    def likelihood_for(cls, config: PluginConfig) -> str:
        assert isinstance(config, cls.Config)
        if config.binary is not None:
            return likelihood_name(config.binary)
        file = open_h5(config.path)
        file.raise_first()
        return likelihood_name(file_is_binary(file))

    @classmethod
    def run_defaults_for(cls, config: PluginConfig) -> dict[str, dict[str, object]]:
        """Every step's loss on a file of sequences, the last step's on static images (spec 3.2)."""
        assert isinstance(config, cls.Config)
        file = open_h5(config.path)
        file.raise_first()
        sequences = file.splits["train"].frames > 1
        return {"model": {"loss_step_weights": "all" if sequences else "last"}}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.file.splits["train"].image_shape

    @property
    def binary(self) -> bool:
        if self._binary is None:
            self._binary = file_is_binary(self.file)
        return self._binary

    @cached_split
    def split(self, name: SplitName) -> Split:
        arrays = self.file.splits[name]
        count, frames = self.counts[name], self.read_frames[name]
        if self.config.in_memory:
            return ArraySplit(*checked_in_memory(arrays, count, frames))
        return FileSplit(arrays, count, frames)

    def source(self) -> dict[str, Any]:
        path = Path(self.config.path).resolve()
        return {
            "kind": "file",
            "dataset": self.name,
            "path": str(path),
            "bytes": path.stat().st_size,
            "samples": {s: self.counts[s] for s in SPLITS},
            "frames_stored": self.file.splits["train"].frames,
            "origin": str(self.file.attrs.get("source", "")),
        }


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the ``hdf5`` data set."""
    register(HDF5Dataset)
