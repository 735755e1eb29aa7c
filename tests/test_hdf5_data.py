"""The ``hdf5`` data set, ``grouping data export`` and ``grouping data check`` on the original layout."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from grouping import hookimpl
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.data.tools import check_file, export_dataset
from grouping.data.values import ValueStats
from grouping.engine.assembly import build_dataset, resolve
from grouping.errors import DataError
from grouping.plugin_api.interfaces import SPLITS, ArraySplit, Dataset, PluginConfig, SplitName
from grouping.plugin_api.registry import get_registry

SIZES = ["dataset.train_size=96", "dataset.valid_size=32", "dataset.test_size=32"]
TINY_RUN = [
    *SIZES,
    "train.batch_size=32",
    "train.epochs=1",
    "train.valid_samples=32",
    "eval.batch_size=32",
    "model.steps=2",
    "network.hidden=8",
    "train.max_minutes=null",
]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def shapes_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated static shapes (96 / 32 / 32) exported in the original layout."""
    out = tmp_path_factory.mktemp("export") / "shapes.h5"
    export_dataset(build_config(assignments=SIZES), out)
    return out


def write_h5(path: Path, features: np.ndarray, groups: np.ndarray, **changes: Any) -> Path:
    """An original-layout file whose three splits hold the same arrays; ``changes`` replace or
    (with None) drop the datasets named ``<group>/<key>``."""
    with h5py.File(path, "w") as f:
        for group in ("training", "validation", "test"):
            for key, value in (("features", features), ("groups", groups)):
                name = f"{group}/{key}"
                value = changes.get(name, value)
                if value is not None:
                    f.create_dataset(name, data=value)
            if changes.get(group, True) is None:
                del f[group]
    return path


def valid_arrays(t: int = 1, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Binary features (T, N, 6, 6, 1) and their labels (T, N, 6, 6, 1) in {0, 1, 2}."""
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 3, size=(t, n, 6, 6, 1)).astype(np.float32)
    return (groups > 0).astype(np.float32), groups


# --------------------------------------------------------------------------------------------------
# round trip and training


def test_export_then_hdf5_gives_the_generators_batches(shapes_h5: Path) -> None:
    generator = build_dataset(build_config(assignments=SIZES))
    lazy = build_dataset(
        build_config(assignments=[*SIZES, "dataset.name=hdf5", f"dataset.path={shapes_h5}"])
    )
    loaded = build_dataset(
        build_config(
            assignments=[
                *SIZES,
                "dataset.name=hdf5",
                f"dataset.path={shapes_h5}",
                "dataset.in_memory=true",
            ]
        )
    )
    assert isinstance(loaded.split("train"), ArraySplit)
    assert lazy.image_shape == generator.image_shape == (28, 28, 1)
    assert lazy.binary and loaded.binary
    for split in SPLITS:
        want = generator.split(split)
        assert len(lazy.split(split)) == len(want) and lazy.split(split).frames == want.frames == 1
        # the trainer's fixed blocks of consecutive samples, and an arbitrary order with repeats
        for index in (np.arange(0, 16), np.arange(16, 32), np.array([7, 3, 3, 0, 31])):
            f0, g0 = want.get(index)
            for dataset in (lazy, loaded):
                f1, g1 = dataset.split(split).get(index)
                assert f1.dtype == torch.float32 and g1.dtype == torch.int64
                assert torch.equal(f0, f1) and torch.equal(g0, g1)


def test_the_exported_file_has_the_original_layout(shapes_h5: Path) -> None:
    with h5py.File(shapes_h5, "r") as f:
        assert set(f) == {"training", "validation", "test"}
        assert f["training/features"].shape == (1, 96, 28, 28, 1)
        assert f["training/groups"].shape == (1, 96, 28, 28, 1)
        assert f["test/features"].dtype == np.float32 and f["test/groups"].dtype == np.float32
        assert json.loads(f.attrs["source"])["dataset"] == "shapes"
        assert bool(f.attrs["binary"])


def test_a_run_on_an_exported_file_trains(shapes_h5: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--dataset", "hdf5", "--set", f"dataset.path={shapes_h5}", *sets(TINY_RUN)]
    result = invoke(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    source = summary["data_source"]
    assert source["kind"] == "file" and source["dataset"] == "hdf5"
    assert source["samples"] == {"train": 96, "valid": 32, "test": 32}
    assert json.loads(source["origin"])["dataset"] == "shapes"
    assert summary["test"]["images"] == 32


def test_sizes_larger_than_the_file_take_all_it_holds(shapes_h5: Path) -> None:
    big = ["dataset.train_size=1000", "dataset.name=hdf5", f"dataset.path={shapes_h5}"]
    dataset = build_dataset(build_config(assignments=big))
    assert len(dataset.split("train")) == 96 and len(dataset.split("test")) == 32


def test_a_training_split_smaller_than_a_batch_is_refused(shapes_h5: Path, tmp_path: Path) -> None:
    args = ["run", "--dataset", "hdf5", "--set", f"dataset.path={shapes_h5}", *sets(TINY_RUN)]
    more = sets(["dataset.train_size=500", "train.batch_size=200"])
    result = invoke(*args, *more, "--out", str(tmp_path / "r"))
    assert result.exit_code == 2
    assert "training split holds 96 samples, fewer than train.batch_size (200)" in result.stderr


class Moving(Dataset):
    """A sequential data set of random grey frames (N, F, 4, 6, 2) for the frames tests."""

    name = "test-moving"
    description = "random grey sequences"
    default_likelihood = "bernoulli"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (4, 6, 2)

    @property
    def binary(self) -> bool:
        return False

    def split(self, name: SplitName) -> ArraySplit:
        rng = np.random.default_rng([self.seed, SPLITS.index(name)])
        n = self.sizes[name]
        features = rng.random((n, self.frames, 4, 6, 2), dtype=np.float32)
        groups = rng.integers(0, 4, size=(n, self.frames, 4, 6))
        return ArraySplit(torch.from_numpy(features), torch.from_numpy(groups))


@pytest.fixture
def moving(register_plugin: Callable[[Any, str], None]) -> None:
    mod = types.ModuleType("moving_plugin")
    mod.register_datasets = hookimpl(lambda register: register(Moving))  # type: ignore[attr-defined]
    register_plugin(mod, "moving-plugin")


def test_sequences_round_trip_and_the_first_steps_plus_one_frames_are_read(
    moving: None, tmp_path: Path
) -> None:
    out = tmp_path / "moving.h5"
    result = invoke(
        "data",
        "export",
        "--dataset",
        "test-moving",
        "--steps",
        "4",
        *sets(SIZES),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "5 frame(s) of 4x6x2 (grey)" in result.output
    with h5py.File(out, "r") as f:
        assert f["validation/features"].shape == (5, 32, 4, 6, 2)
    generator = build_dataset(
        build_config(assignments=[*SIZES, "dataset.name=test-moving", "model.steps=4"])
    )
    for steps in (4, 2):
        read = build_dataset(
            build_config(
                assignments=[
                    *SIZES,
                    "dataset.name=hdf5",
                    f"dataset.path={out}",
                    f"model.steps={steps}",
                ]
            )
        )
        assert not read.binary
        f1, g1 = read.split("valid").get(np.arange(32))
        f0, g0 = generator.split("valid").get(np.arange(32))
        assert f1.shape == (32, steps + 1, 4, 6, 2)
        assert torch.equal(f1, f0[:, : steps + 1]) and torch.equal(g1, g0[:, : steps + 1])
    too_many = [*SIZES, "dataset.name=hdf5", f"dataset.path={out}", "model.steps=6"]
    with pytest.raises(
        DataError, match=r"has 5 frames per sequence but the run needs 7 .*--steps 4"
    ):
        build_dataset(build_config(assignments=too_many))


# --------------------------------------------------------------------------------------------------
# the likelihood follows the file


def test_auto_likelihood_follows_the_pixels(tmp_path: Path) -> None:
    features, groups = valid_arrays()
    binary = write_h5(tmp_path / "binary.h5", features, groups)
    grey = write_h5(tmp_path / "grey.h5", features * 0.5, groups)
    cls = get_registry().get("dataset", "hdf5").cls

    def picked(path: Path, **options: Any) -> str:
        return str(cls.likelihood_for(cls.Config.model_validate({"path": str(path), **options})))

    assert picked(binary) == "bernoulli"
    assert picked(grey) == "gaussian"
    assert picked(grey, binary=True) == "bernoulli"
    config = build_config(
        assignments=["likelihood.name=auto", "dataset.name=hdf5", f"dataset.path={binary}"]
    )
    assert resolve(config).likelihood.name == "bernoulli"


def test_resolve_asks_the_data_set_class_for_the_likelihood(
    register_plugin: Callable[[Any, str], None],
) -> None:
    seen: list[PluginConfig] = []

    class Picky(Moving):
        name = "test-picky"

        @classmethod
        def likelihood_for(cls, config: PluginConfig) -> str:
            seen.append(config)
            return "bernoulli"

    mod = types.ModuleType("picky_plugin")
    mod.register_datasets = hookimpl(lambda register: register(Picky))  # type: ignore[attr-defined]
    register_plugin(mod, "picky-plugin")
    config = resolve(build_config(assignments=["dataset.name=test-picky", "likelihood.name=auto"]))
    assert config.likelihood.name == "bernoulli" and len(seen) == 1


# --------------------------------------------------------------------------------------------------
# malformed files: one line, exit code 2, from both `run` and `data check`


def _malformed(kind: str, path: Path) -> tuple[Path, str]:
    features, groups = valid_arrays()
    if kind == "missing group":
        return write_h5(path, features, groups, validation=None), "no group 'validation'"
    if kind == "missing dataset":
        return write_h5(path, features, groups, **{"test/groups": None}), "no dataset 'groups'"
    if kind == "wrong rank":
        bad = features[0]  # (N, H, W, C)
        return (
            write_h5(path, features, groups, **{"training/features": bad}),
            "features has rank 4",
        )
    if kind == "labels out of range":
        bad = groups.copy()
        bad[0, 0, 0, 0, 0] = -1
        return (
            write_h5(path, features, groups, **{"training/groups": bad}),
            "labels range over [-1, 2]",
        )
    if kind == "NaN features":
        bad = features.copy()
        bad[0, 0, 1, 1, 0] = np.nan
        return (
            write_h5(path, features, groups, **{"training/features": bad}),
            "features hold 1 NaN or infinite values",
        )
    if kind == "truncated":
        big = np.ones((1, 400, 6, 6, 1), np.float32)
        write_h5(path, big, big)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path, "not a readable HDF5 file"
    raise AssertionError(kind)


MALFORMED = [
    "missing group",
    "missing dataset",
    "wrong rank",
    "labels out of range",
    "NaN features",
    "truncated",
]


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_file_is_refused_in_one_line(kind: str, tmp_path: Path) -> None:
    path, message = _malformed(kind, tmp_path / "bad.h5")
    run = invoke(
        "run", "--dataset", "hdf5", "--set", f"dataset.path={path}", *sets(TINY_RUN),
        "--batch-size", "8", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert run.exit_code == 2, run.output
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("error: ")
    assert message in run.stderr and "Traceback" not in run.output
    check = invoke("data", "check", str(path))
    assert check.exit_code == 2
    assert message in check.stderr and "Traceback" not in check.output
    assert all(line.startswith("error: ") for line in check.stderr.splitlines())


def test_a_bad_value_deep_in_the_file_stops_training_at_its_batch(tmp_path: Path) -> None:
    features, groups = valid_arrays(n=300)
    features[0, 270, 2, 2, 0] = np.nan  # past the samples checked when the data set opens
    path = write_h5(tmp_path / "deep.h5", features, groups)
    run = invoke(
        "run", "--dataset", "hdf5", "--set", f"dataset.path={path}", *sets(TINY_RUN),
        "--set", "dataset.train_size=300", "--out", str(tmp_path / "run"),
    )  # fmt: skip
    assert run.exit_code == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.endswith("training, samples 256-287: features hold 1 NaN or infinite values")
    assert "Traceback" not in run.output


def test_check_lists_every_defect_and_the_shares(tmp_path: Path) -> None:
    features, groups = valid_arrays()
    bad_groups = groups.copy()
    bad_groups[0, 0, 0, 0, 0] = 2.5
    bad_features = features * 2.0
    path = write_h5(
        tmp_path / "two.h5",
        features,
        groups,
        **{"validation/groups": bad_groups, "test/features": bad_features},
    )
    report = check_file(path)
    assert len(report.defects) == 2
    assert "validation: groups hold 1 non-integer labels" in report.defects[0]
    assert "test: features range over [0, 2]" in report.defects[1]
    train = report.splits[0].as_dict()
    zero = groups[0, ..., 0] == 0
    assert train["background_share"] == pytest.approx(zero.mean())  # label 0 is dark here
    assert train["overlap_share"] == 0.0
    assert train["binary"] and train["objects_max"] == 2
    as_json = json.loads(invoke("data", "check", str(path), "--json").stdout)
    assert as_json["ok"] is False and len(as_json["defects"]) == 2


def test_value_stats_count_background_and_overlap_exactly() -> None:
    features = np.zeros((1, 1, 2, 2, 3), np.float32)
    features[0, 0, 0, 0] = [0, 1, 0]  # label 0 and lit: overlap
    features[0, 0, 0, 1] = [1, 1, 1]  # object 1
    groups = np.array([[[[0, 1], [0, 2]]]])  # (1, 1, 2, 2); (1, 0) is dark: background
    stats = ValueStats()
    stats.add(features, groups)
    assert (stats.overlap, stats.background, stats.pixels) == (1, 1, 4)
    assert stats.objects_max == 2 and stats.binary and stats.defects("x") == []


def test_check_accepts_a_good_file_and_prints_a_table(shapes_h5: Path) -> None:
    result = invoke("data", "check", str(shapes_h5))
    assert result.exit_code == 0, result.output
    assert "training" in result.stdout and "28x28x1" in result.stdout
    assert "ok: no defects found" in result.stdout


def test_check_refuses_an_unknown_file_type(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("1,2")
    result = invoke("data", "check", str(tmp_path / "x.csv"))
    assert result.exit_code == 2 and "expected a .npz file or an HDF5 file" in result.stderr


def test_export_refuses_to_overwrite_without_force(shapes_h5: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.h5"
    shutil.copy(shapes_h5, target)
    result = invoke("data", "export", "--dataset", "shapes", *sets(SIZES), "--out", str(target))
    assert result.exit_code == 2 and "exists; pass --force" in result.stderr
    result = invoke(
        "data", "export", "--dataset", "shapes", *sets(SIZES), "--seed", "1", "--out", str(target),
        "--force",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(h5py.File(target, "r").attrs["source"])["seed"] == 1
    assert not list(tmp_path.glob("*.partial"))


def test_without_h5py_the_error_says_how_to_get_it(
    shapes_h5: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "h5py", None)
    result = invoke("run", "--dataset", "hdf5", "--set", f"dataset.path={shapes_h5}")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: reading and writing HDF5 files needs h5py; install it with: pip install 'grouping[hdf5]'\n"
    )


def test_export_and_check_run_as_subprocesses(tmp_path: Path) -> None:
    exe = shutil.which("grouping") or str(Path(sys.executable).parent / "grouping")
    out = tmp_path / "frozen.h5"
    export = subprocess.run(
        [exe, "data", "export", "--dataset", "shapes", *sets(SIZES), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert export.returncode == 0, export.stderr
    check = subprocess.run([exe, "data", "check", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "ok: no defects found" in check.stdout
