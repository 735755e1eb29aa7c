"""The ``arrays`` data set: your own images or videos with per-pixel instance labels, as ``.npz``.

Each file holds ``features`` and ``groups``:

* images: features (N, H, W) or (N, H, W, C), groups (N, H, W);
* sequences: features (N, T, H, W) or (N, T, H, W, C), groups (N, T, H, W).

Features are floats in [0, 1] (bool, or uint8 scaled by 1/255); groups are integer object labels,
0 for background and for pixels where objects overlap (they are not scored). Either one file is
split by ``fractions`` in file order (first train, then validation, then test), or each split has
its own file. Each split then uses its first ``*_size`` samples (all of them when it holds fewer).
Binary or grey pixels are detected from the values unless ``binary`` says which. The arrays are held
in memory; for data larger than memory, export to the original HDF5 layout and use ``hdf5``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from grouping.data.files import MemoryArrays, checked_in_memory, frames_to_read, npz_arrays
from grouping.data.values import is_binary
from grouping.errors import DataError
from grouping.plugins import (
    SPLITS,
    ArraySplit,
    Dataset,
    PluginConfig,
    Register,
    Split,
    SplitName,
    SplitSizes,
    hookimpl,
)
from grouping_plugins.sources.pixels import likelihood_name

#: How far the fractions' sum may stray from 1 (they are typed as decimals).
FRACTION_TOLERANCE = 1e-6
#: ``groups`` of sequences are (N, T, H, W); of images (N, H, W).
SEQUENCE_GROUPS_RANK = 4


def groups_rank(path: Path) -> int | None:
    """The rank of a ``.npz`` file's ``groups``, read from its header; None if it cannot be read
    (the data set says why when it loads the file)."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("groups.npy") as member:
            version = np.lib.format.read_magic(member)
            read = {(1, 0): np.lib.format.read_array_header_1_0}
            header = read.get(version, np.lib.format.read_array_header_2_0)(member)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return len(header[0])


class ArraysConfig(PluginConfig):
    path: str | None = Field(default=None, description="one .npz file, split by fractions")
    fractions: tuple[float, float, float] = Field(
        default=(0.8, 0.1, 0.1), description="train, valid, test shares of path's samples"
    )
    train_path: str | None = Field(default=None, description="the training .npz file")
    valid_path: str | None = Field(default=None, description="the validation .npz file")
    test_path: str | None = Field(default=None, description="the test .npz file")
    binary: bool | None = Field(
        default=None, description="binary pixels (bernoulli) or grey (gaussian); None: detect"
    )

    @model_validator(mode="after")
    def _one_source(self) -> ArraysConfig:
        per_split = (self.train_path, self.valid_path, self.test_path)
        one_file = self.path is not None and not any(per_split)
        file_per_split = self.path is None and all(per_split)
        if not (one_file or file_per_split):
            raise ValueError(
                "give either path (one .npz file split by fractions) "
                "or all of train_path, valid_path and test_path"
            )
        f = self.fractions
        if min(f) <= 0 or not math.isclose(sum(f), 1.0, abs_tol=FRACTION_TOLERANCE):
            raise ValueError(f"fractions must be three positive shares summing to 1, not {f}")
        return self

    def paths(self) -> list[Path]:
        given = [self.path] if self.path else [self.train_path, self.valid_path, self.test_path]
        return [Path(p) for p in given if p]


def load_splits(config: ArraysConfig) -> dict[SplitName, MemoryArrays]:
    """Each split's arrays (sample-first), or the file's first defect as a DataError."""
    loaded = []
    for path in config.paths():
        arrays, defects = npz_arrays(path)
        if arrays is None:
            raise DataError(defects[0])
        loaded.append(arrays)
    if len(loaded) == 3:
        out = dict(zip(SPLITS, loaded))
    else:
        whole = loaded[0]
        n = whole.samples
        n_train = math.floor(n * config.fractions[0])
        n_valid = math.floor(n * config.fractions[1])
        bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid)}
        bounds["test"] = (n_train + n_valid, n)
        out = {}
        for split, (a, b) in bounds.items():
            if b <= a:
                raise DataError(
                    f"{whole.where}: {n} samples leave none for the {split} split with fractions "
                    f"{config.fractions}; use more samples or other fractions"
                )
            where = f"{whole.where} [{split} samples {a}-{b - 1}]"
            out[split] = MemoryArrays(whole.features[a:b], whole.groups[a:b], where)
    shapes = {a.image_shape for a in out.values()}
    if len(shapes) > 1:
        raise DataError(f"the splits' images differ in size (H, W, C): {sorted(shapes)}")
    return out  # type: ignore[return-value]


class ArraysDataset(Dataset):
    """Your own arrays from ``.npz`` files, held in memory."""

    name = "arrays"
    description = "your own .npz arrays: images (N, H, W[, C]) or sequences (N, T, H, W[, C])"
    Config = ArraysConfig
    config: ArraysConfig

    def __init__(self, config: ArraysConfig, sizes: SplitSizes, frames: int, seed: int) -> None:
        super().__init__(config, sizes, frames, seed)
        self.arrays = load_splits(config)
        self._splits: dict[SplitName, Split] = {}
        for name, arrays in self.arrays.items():
            count = min(sizes[name], arrays.samples)
            read = frames_to_read(arrays.frames, frames, arrays.where)
            self._splits[name] = ArraySplit(*checked_in_memory(arrays, count, read))
        self._binary = config.binary

    @classmethod
    def likelihood_for(cls, config: PluginConfig) -> str:
        assert isinstance(config, ArraysConfig)
        if config.binary is not None:
            return likelihood_name(config.binary)
        arrays = load_splits(config)["train"]
        features, _ = arrays.read(0, arrays.samples, arrays.frames)
        return likelihood_name(is_binary(features))

    @classmethod
    def run_defaults_for(cls, config: PluginConfig) -> dict[str, dict[str, object]]:
        """Every step's loss on sequences, the last step's on images (spec 3.2); the training
        file's ``groups`` header tells which, without loading the arrays."""
        assert isinstance(config, ArraysConfig)
        sequences = groups_rank(config.paths()[0]) == SEQUENCE_GROUPS_RANK
        return {"model": {"loss_step_weights": "all" if sequences else "last"}}

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.arrays["train"].image_shape

    @property
    def binary(self) -> bool:
        if self._binary is None:
            self._binary = all(
                is_binary(split.features.numpy())  # type: ignore[attr-defined]
                for split in self._splits.values()
            )
        return self._binary

    def split(self, name: SplitName) -> Split:
        return self._splits[name]

    def source(self) -> dict[str, Any]:
        return {
            "kind": "file",
            "dataset": self.name,
            "paths": [str(p.resolve()) for p in self.config.paths()],
            "samples": {s: len(self._splits[s]) for s in SPLITS},
        }


@hookimpl
def register_datasets(register: Register) -> None:
    """Register the ``arrays`` data set."""
    register(ArraysDataset)
