"""The ``arrays`` data set: your own .npz images and sequences, grey or colour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from grouping_plugins.bernoulli import BernoulliLikelihood
from grouping_plugins.conv import ConvNetwork
from grouping_plugins.fc import FCNetwork
from grouping_plugins.rnn_em import RNNEM
from grouping_plugins.sources.sprites import SIZES, SPRITES, render

from grouping.accel.device import make_generator
from grouping.cli.main import cli
from grouping.config.loading import build_config
from grouping.engine.assembly import assemble, build_dataset, resolve
from grouping.errors import ConfigError, DataError
from grouping.evaluation.scoring import score_split
from grouping.plugin_api.interfaces import NetworkSpec, PluginConfig
from grouping.plugin_api.registry import get_registry
from grouping.training.api import train

#: The primary colours: each object is drawn in one channel, so pixel values stay 0 or 1.
PRIMARIES = np.eye(3, dtype=np.float32)


def coloured_shapes(
    n: int, seed: int, size: int = 16, objects: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Sprites in distinct primary colours: features (N, size, size, 3) in {0, 1}, groups (N, H, W)."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(SPRITES), size=(n, objects))
    top = np.floor(rng.random((n, objects)) * (size - SIZES[kinds, 0] + 1)).astype(np.int64)
    left = np.floor(rng.random((n, objects)) * (size - SIZES[kinds, 1] + 1)).astype(np.int64)
    _, groups = render(kinds, top, left, (size, size))
    picks = np.argsort(rng.random((n, len(PRIMARIES))), axis=1)[:, :objects]
    colours = PRIMARIES[picks]  # (N, O, 3)
    features = np.zeros((n, size, size, 3), np.float32)
    for j in range(objects):
        mask, _ = render(kinds[:, j : j + 1], top[:, j : j + 1], left[:, j : j + 1], (size, size))
        features = np.maximum(features, mask[..., None] * colours[:, j, None, None, :])
    return features, groups


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def dataset_for(*assignments: str) -> Any:
    return build_dataset(build_config(assignments=["dataset.name=arrays", *assignments]))


def test_one_file_is_split_by_fractions_in_file_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    features = rng.random((50, 5, 4), dtype=np.float32)  # (N, H, W) grey
    groups = rng.integers(0, 3, size=(50, 5, 4))
    np.savez(tmp_path / "mine.npz", features=features, groups=groups)
    data = dataset_for(f"dataset.path={tmp_path / 'mine.npz'}", "dataset.fractions=[0.6, 0.2, 0.2]")
    assert data.image_shape == (5, 4, 1) and not data.binary
    assert [len(data.split(s)) for s in ("train", "valid", "test")] == [30, 10, 10]
    f, g = data.split("valid").get(np.arange(10))
    assert f.shape == (10, 1, 5, 4, 1) and g.dtype == torch.int64
    assert torch.equal(f[:, 0, :, :, 0], torch.from_numpy(features[30:40]))
    assert torch.equal(g[:, 0], torch.from_numpy(groups[30:40]))
    capped = dataset_for(
        f"dataset.path={tmp_path / 'mine.npz'}", "dataset.train_size=7", "train.batch_size=4"
    )
    assert len(capped.split("train")) == 7 and len(capped.split("test")) == 5


def test_a_file_per_split_of_uint8_colour_sequences(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = {}
    for split, n in (("train", 6), ("valid", 3), ("test", 2)):
        features = rng.integers(0, 256, size=(n, 4, 3, 2, 3), dtype=np.uint8)  # (N, T, H, W, C)
        groups = rng.integers(0, 2, size=(n, 4, 3, 2)).astype(np.uint8)
        paths[split] = tmp_path / f"{split}.npz"
        np.savez(paths[split], features=features, groups=groups)
    data = dataset_for(*(f"dataset.{s}_path={p}" for s, p in paths.items()), "model.steps=2")
    assert data.image_shape == (3, 2, 3)
    f, g = data.split("test").get(np.arange(2))
    assert f.shape == (2, 3, 3, 2, 3)  # the first steps + 1 = 3 of 4 frames
    raw = np.load(paths["test"])["features"][:, :3]
    assert torch.allclose(f, torch.from_numpy(raw.astype(np.float32) / 255))
    assert float(f.max()) <= 1.0 and g.shape == (2, 3, 3, 2)
    with pytest.raises(DataError, match=r"has 4 frames per sequence but the run needs 5"):
        dataset_for(*(f"dataset.{s}_path={p}" for s, p in paths.items()), "model.steps=4")


def test_binary_is_detected_and_can_be_overridden(tmp_path: Path) -> None:
    features, groups = coloured_shapes(20, seed=0)
    np.savez(tmp_path / "c.npz", features=features, groups=groups)
    np.savez(tmp_path / "g.npz", features=features * 0.5, groups=groups)
    cls = get_registry().get("dataset", "arrays").cls

    def picked(name: str, **options: Any) -> str:
        config = cls.Config.model_validate({"path": str(tmp_path / name), **options})
        return str(cls.likelihood_for(config))

    assert picked("c.npz") == "bernoulli"
    assert picked("g.npz") == "gaussian"
    assert picked("g.npz", binary=True) == "bernoulli"
    assert dataset_for(f"dataset.path={tmp_path / 'c.npz'}").binary
    assert not dataset_for(f"dataset.path={tmp_path / 'c.npz'}", "dataset.binary=false").binary


@pytest.mark.parametrize(
    ("assignments", "message"),
    [
        ([], "give either path (one .npz file split by fractions) or all of train_path"),
        (["dataset.path=a.npz", "dataset.test_path=b.npz"], "give either path"),
        (["dataset.path=a.npz", "dataset.fractions=[0.5, 0.5, 0.5]"], "summing to 1"),
    ],
)
def test_config_mistakes_are_one_line(assignments: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataset_for(*assignments)


def test_malformed_arrays_are_refused(tmp_path: Path) -> None:
    good = np.zeros((10, 4, 4), np.float32)
    cases = {
        "missing.npz": ({"features": good}, "no array 'groups'"),
        "rank.npz": (
            {"features": good, "groups": np.zeros((10, 4), np.int64)},
            "have the wrong ranks",
        ),
        "labels.npz": ({"features": good, "groups": -np.ones((10, 4, 4))}, "labels range over"),
        "nan.npz": (
            {"features": np.full((10, 4, 4), np.nan, np.float32), "groups": np.zeros((10, 4, 4))},
            "NaN or infinite",
        ),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DataError, match=message):
            dataset_for(f"dataset.path={tmp_path / name}")
        check = invoke("data", "check", str(tmp_path / name))
        assert check.exit_code == 2 and message in check.stderr
    np.savez(tmp_path / "whole.npz", features=good, groups=np.zeros((10, 4, 4), np.int64))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:300])
    run = invoke("run", "--dataset", "arrays", "--set", f"dataset.path={tmp_path / 'cut.npz'}")
    assert run.exit_code == 2 and "is not a readable .npz file" in run.stderr
    assert run.stderr.count("\n") == 1
    tiny = dataset_for
    with pytest.raises(DataError, match="leave none for the valid split"):
        np.savez(tmp_path / "few.npz", features=good[:3], groups=np.zeros((3, 4, 4), np.int64))
        tiny(f"dataset.path={tmp_path / 'few.npz'}")


def test_check_reports_a_colour_file(tmp_path: Path) -> None:
    features, groups = coloured_shapes(30, seed=2)
    np.savez(tmp_path / "c.npz", features=features, groups=groups)
    result = invoke("data", "check", str(tmp_path / "c.npz"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (row,) = report["splits"]
    assert row["image_shape"] == [16, 16, 3] and row["frames"] == 1 and row["samples"] == 30
    assert row["binary"] and row["label_range"] == [0.0, 2.0] and row["objects_max"] == 2
    dark = ~features.any(axis=-1)
    assert row["background_share"] == pytest.approx(((groups == 0) & dark).mean())
    assert row["overlap_share"] == pytest.approx(((groups == 0) & ~dark).mean())


@pytest.mark.parametrize("network", ["fc", "conv"])
def test_the_networks_take_colour(network: str) -> None:
    spec = NetworkSpec(image_shape=(16, 16, 3))
    if network == "fc":
        net: Any = FCNetwork(FCNetwork.Config(hidden=8), spec)
    else:
        net = ConvNetwork(ConvNetwork.Config(hidden=8, encoder_fc=16, decoder_fc=16), spec)
    u = torch.randn(5, 16, 16, 3)
    assert net.encode(u).shape == (5, net.encoding_size)
    assert net.decode(torch.rand(5, net.state_size)).shape == (5, 16, 16, 3)
    assert net.state_size == 8
    # and under RNN-EM, which runs the recurrence between the two: B = 1 sample, K = 5
    updater = RNNEM(PluginConfig(), net, BernoulliLikelihood(BernoulliLikelihood.Config()))
    psi, state = updater(u[None], updater.initial_state(1, 5, u.device, u.dtype))
    assert psi.shape == (1, 5, 16, 16, 3) and state.shape == (1, 5, 8)


#: A small colour run that trains in seconds: 1,024 coloured images of 16x16x3, batches of 8.
COLOUR_RUN = [
    "dataset.name=arrays",
    "dataset.fractions=[0.8, 0.1, 0.1]",
    "dataset.train_size=1024",
    "dataset.valid_size=128",
    "dataset.test_size=128",
    "likelihood.name=auto",
    "network.hidden=64",
    "model.steps=5",
    "model.gradient_gamma=false",
    "train.lr=0.01",
    "train.batch_size=8",
    "train.epochs=3",
    "train.valid_samples=128",
    "train.max_minutes=null",  # no wall-clock limit in tests
    "train.threads=1",  # tiny batches: one thread is fastest, and the suite shares two cores
    "train.lr_schedule=constant",  # as measured below; the quickstart's cosine is for 6 epochs
]


@pytest.fixture
def restore_threads() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_colour_arrays_set_trains_above_the_untrained_model(
    tmp_path: Path, restore_threads: None
) -> None:
    features, groups = coloured_shapes(1280, seed=0)
    np.savez(tmp_path / "colour.npz", features=features, groups=groups)
    config = resolve(
        build_config(assignments=[*COLOUR_RUN, f"dataset.path={tmp_path / 'colour.npz'}"])
    )
    assert config.likelihood.name == "bernoulli" and config.noise.name == "bitflip"
    torch.manual_seed(config.seed)
    parts = assemble(config)
    assert parts.dataset.image_shape == (16, 16, 3)
    untrained = score_split(
        parts.model,
        parts.noise,
        parts.dataset.split("test"),
        samples=None,
        batch_size=128,
        device=torch.device("cpu"),
        generator=make_generator(torch.device("cpu"), config.seed + 1),
    ).summary()
    trained = train(config, tmp_path / "run").test
    assert trained["images"] == untrained["images"] == 128
    # measured with seeds 0-5 (data and run): untrained 0.003-0.019, trained 0.371-0.496
    assert trained["ami"] > untrained["ami"] + 0.25, (trained["ami"], untrained["ami"])
