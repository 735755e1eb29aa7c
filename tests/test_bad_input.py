"""Bad input, tried systematically: each is one line naming what is wrong and what is valid, exit
code 2, no traceback, and nothing written where it should not be."""

from __future__ import annotations

import shutil
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from grouping_plugins.bernoulli import BernoulliLikelihood
from grouping_plugins.fc import FCNetwork
from grouping_plugins.noise import BitflipNoise
from grouping_plugins.rnn_em import RNNEM
from grouping_plugins.shapes import ShapesDataset
from torch import Tensor

from grouping import build_config, hookimpl, train
from grouping.cli.main import cli
from grouping.errors import GroupingError
from grouping.plugin_api.interfaces import ArraySplit, Split, SplitName
from tests.conftest import TINY

SET_TINY = [arg for item in TINY for arg in ("--set", item)]

# (id, extra arguments after `grouping run <TINY>`, a piece of the expected message)
# Paths are written relative to the test's folder: "{tmp}" is replaced by it.
CONFIG_CASES: list[tuple[str, list[str], str]] = [
    ("unknown updater", ["--updater", "nope"], "unknown updater 'nope'; valid: "),
    ("unknown network", ["--network", "nope"], "unknown network 'nope'; valid: conv, fc"),
    ("unknown noise", ["--set", "noise.name=nope"], "unknown noise 'nope'; valid: "),
    ("K=0", ["-k", "0"], "model.components: Input should be greater than or equal to 1 (got 0)"),
    ("K=65", ["-k", "65"], "model.components: Input should be less than or equal to 64"),
    ("K not a number", ["-k", "abc"], "'abc' is not a valid integer"),
    (
        "steps=0",
        ["--set", "model.steps=0"],
        "model.steps: Input should be greater than or equal to 1",
    ),
    ("epochs=-1", ["--set", "train.epochs=-1"], "train.epochs: Input should be greater than"),
    ("batch=0", ["--set", "train.batch_size=0"], "train.batch_size: Input should be greater"),
    ("batch > split", ["--set", "train.batch_size=999"], "is larger than dataset.train_size"),
    ("negative size", ["--set", "dataset.valid_size=-3"], "dataset.valid_size: Input should be"),
    ("lr NaN", ["--lr", "nan"], "train.lr: Input should be a finite number (got nan)"),
    ("lr inf via --set", ["--set", "train.lr=inf"], "train.lr: Input should be a finite number"),
    ("lr negative", ["--lr", "-0.1"], "train.lr: Input should be greater than 0"),
    ("lr a word", ["--set", "train.lr=fast"], "train.lr: Input should be a valid number"),
    ("seed negative", ["--seed", "-1"], "seed: Input should be greater than or equal to 0"),
    (
        "max-minutes 0",
        ["--set", "train.max_minutes=0"],
        "train.max_minutes: Input should be greater than 0",
    ),
    ("device", ["--device", "tpu"], "device must be auto, cpu, cuda or cuda:N, not 'tpu'"),
    (
        "precision",
        ["--set", "train.precision=fp8"],
        "train.precision: Input should be 'auto', 'fp32', 'tf32' or 'bf16'",
    ),
    ("on_nonfinite", ["--set", "train.on_nonfinite=ignore"], "Input should be 'stop' or 'skip'"),
    ("step weights count", ["--set", "model.loss_step_weights=[1.0]"], "has 1 entries but steps"),
    ("step weight < 0", ["--set", "model.loss_step_weights=[1,-1,1]"], "must be finite and >= 0"),
    ("plugin option range", ["--set", "noise.probability=2"], "noise.probability: Input should"),
    ("plugin option 0", ["--set", "network.hidden=0"], "network.hidden: Input should be greater"),
    ("unknown plugin option", ["--set", "network.depth=3"], "[network 'fc' options: "),
    ("unknown key", ["--set", "nosuchkey=1"], "nosuchkey: unknown key"),
    ("section not a table", ["--set", "model=3"], "model: Input should be a valid dictionary"),
    ("empty key part", ["--set", "model..steps=3"], "--set expects dotted.key=value"),
    ("no value", ["--set", "model.steps"], "--set expects dotted.key=value, got 'model.steps'"),
    ("no key", ["--set", "=3"], "--set expects dotted.key=value, got '=3'"),
    ("conflicting --set", ["--set", "model.steps=3", "--set", "model.steps.x=1"], "conflicts"),
    ("empty plugin name", ["--set", "updater.name="], "updater.name: String should have at least"),
    ("key with a newline", ["--set", "model.a\nb=1"], "model.'a\\nb': unknown key"),
    ("unknown preset", ["--preset", "nope"], "unknown preset 'nope'; valid: "),
    ("missing preset file", ["--preset", "{tmp}/missing.toml"], "preset file not found"),
    ("preset is a folder", ["--preset", "{tmp}/folder.toml"], "cannot read preset"),
    ("preset not TOML", ["--preset", "{tmp}/broken.toml"], "is not valid TOML"),
    ("preset not UTF-8", ["--preset", "{tmp}/binary.toml"], "cannot read preset"),
    ("preset K=0", ["--preset", "{tmp}/k0.toml"], "model.components: Input should be greater"),
    ("preset lr=nan", ["--preset", "{tmp}/nan.toml"], "train.lr: Input should be a finite"),
    (
        "preset wrong type",
        ["--preset", "{tmp}/type.toml"],
        "model.components: Input should be a valid",
    ),
    ("preset unknown section", ["--preset", "{tmp}/extra.toml"], "extras: unknown key"),
    ("out holds a run", ["--out", "{tmp}/done"], "already holds a run; choose an empty or new"),
    ("out holds files", ["--out", "{tmp}/other"], "already holds other files"),
    ("out is a file", ["--out", "{tmp}/file.txt"], "exists and is not a folder"),
    ("resume: not a run", ["--resume", "{tmp}/other"], "is not a run folder (no config.toml)"),
    ("resume: finished", ["--resume", "{tmp}/done"], "has already ended (finished: epoch limit)"),
    ("resume + preset", ["--resume", "{tmp}/done", "--preset", "quickstart"], "drop --preset"),
    ("resume: truncated", ["--resume", "{tmp}/cut"], "it is truncated, corrupt or not a grouping"),
    ("resume: foreign", ["--resume", "{tmp}/foreign"], "is not a grouping checkpoint"),
    ("resume: changed", ["--resume", "{tmp}/partial", "--seed", "9"], "trained with (seed)"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the cases point at."""
    tmp = tmp_path_factory.mktemp("bad")
    (tmp / "folder.toml").mkdir()
    (tmp / "broken.toml").write_text("[model\ncomponents = 3\n")
    (tmp / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    (tmp / "k0.toml").write_text("[model]\ncomponents = 0\n")
    (tmp / "nan.toml").write_text("[train]\nlr = nan\n")
    (tmp / "type.toml").write_text('[model]\ncomponents = "many"\n')
    (tmp / "extra.toml").write_text("[extras]\nx = 1\n")
    (tmp / "other").mkdir()
    (tmp / "other" / "notes.txt").write_text("mine")
    (tmp / "file.txt").write_text("a file")
    train(build_config("quickstart", assignments=TINY), tmp / "done")
    for name in ("cut", "foreign"):  # a run folder whose last.pt is damaged
        run = tmp / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.toml").write_text((tmp / "done" / "config.toml").read_text())
    data = (tmp / "done" / "checkpoints" / "last.pt").read_bytes()
    (tmp / "cut" / "checkpoints" / "last.pt").write_bytes(data[: len(data) // 3])
    torch.save({"weights": torch.zeros(2)}, tmp / "foreign" / "checkpoints" / "last.pt")
    shutil.copytree(tmp / "done", tmp / "partial")  # a run that has not ended
    (tmp / "partial" / "summary.json").unlink()
    return tmp


def invoke(args: list[str]) -> Any:
    return CliRunner().invoke(cli, ["run", *args])


def assert_one_line_error(result: Any, expected: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_config_and_files_are_one_line_with_exit_code_2(
    files: Path, args: list[str], expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a default run folder would land here; none may be made
    args = [a.replace("{tmp}", str(files)) for a in args]
    resuming = "--resume" in args  # the config comes from the run folder
    result = invoke(args if resuming else [*SET_TINY, *args])
    assert_one_line_error(result, expected.replace("{tmp}", str(files)))
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in (files / "other").iterdir()) == ["notes.txt"]


# -- plugins that misbehave ------------------------------------------------------------------------


class BoomInit(RNNEM):
    name = "boom-init"
    description = "raises in __init__"

    def __init__(self, *args: Any) -> None:
        raise RuntimeError("cannot allocate the frobnicator")


class RefusesConfig(RNNEM):
    name = "refuses-config"
    description = "raises ValueError in __init__"

    def __init__(self, *args: Any) -> None:
        raise ValueError("hidden must be even")


class RaisesInForward(RNNEM):
    name = "raises-in-forward"
    description = "raises in forward"

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        raise IndexError("index 7 is out of bounds")


class WrongShape(RNNEM):
    name = "wrong-shape"
    description = "returns psi with one column"

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        psi, state = super().forward(u, state)
        return psi[..., :1, :], state  # (B, K, H, 1, C)


class NotATuple(RNNEM):
    name = "not-a-tuple"
    description = "returns only psi"

    def forward(self, u: Tensor, state: Tensor) -> Any:
        return super().forward(u, state)[0]


class WrongState(RNNEM):
    name = "wrong-state"
    description = "returns a state with a lost batch"

    def forward(self, u: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        psi, state = super().forward(u, state)
        return psi, state[:1]


class ShortLikelihood(BernoulliLikelihood):
    name = "short-likelihood"
    description = "pixel_prob drops the width axis"

    def pixel_prob(self, x: Tensor, psi: Tensor) -> Tensor:
        return super().pixel_prob(x, psi)[..., :1, :]


class ShapeNoise(BitflipNoise):
    name = "shape-noise"
    description = "returns one frame fewer"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        return super().__call__(x, generator)[:, 1:]


class SmallFrames(ShapesDataset):
    name = "small-frames"
    description = "says 28x28 but yields 27x27"

    def split(self, name: SplitName) -> Split:
        inner = super().split(name)
        assert isinstance(inner, ArraySplit)
        return ArraySplit(inner.features[:, :, :27, :27], inner.groups[:, :, :27, :27])


class NoSplit(ShapesDataset):
    name = "no-split"
    description = "split returns a list"

    def split(self, name: SplitName) -> Any:
        return [1, 2, 3]


class MissingFile(ShapesDataset):
    name = "missing-file"
    description = "its split opens a file that is not there"

    def split(self, name: SplitName) -> Split:
        np.load("/nonexistent/shapes.npz")
        raise AssertionError


class TenSamples(ShapesDataset):
    name = "ten-samples"
    description = "a train split of 10 samples whatever the config says"

    def split(self, name: SplitName) -> Split:
        inner = super().split(name)
        assert isinstance(inner, ArraySplit)
        return ArraySplit(inner.features[:10], inner.groups[:10]) if name == "train" else inner


class BadShape(ShapesDataset):
    name = "bad-image-shape"
    description = "image_shape of two numbers"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (28, 28)  # type: ignore[return-value]


class NarrowDecoder(FCNetwork):
    name = "narrow-decoder"
    description = "decodes one column too few"

    def decode(self, h: Tensor) -> Tensor:
        return super().decode(h)[:, :, :-1]


def _register_raises(register: Any) -> None:
    raise RuntimeError("import of an optional dependency failed")


BROKEN = {
    "register_updaters": [
        BoomInit,
        RefusesConfig,
        RaisesInForward,
        WrongShape,
        NotATuple,
        WrongState,
    ],
    "register_likelihoods": [ShortLikelihood],
    "register_networks": [NarrowDecoder],
    "register_noises": [ShapeNoise],
    "register_datasets": [SmallFrames, NoSplit, MissingFile, TenSamples, BadShape],
}

#: The model plugins' contracts are checked once, at assembly, on a tiny batch of B = 2 samples
#: (K = 3 components, 2 frames), and a split's on its first B = 2 samples: hence the sizes below.
PLUGIN_CASES: list[tuple[str, list[str], str]] = [
    ("__init__ raises", ["--updater", "boom-init"],
     "updater 'boom-init' (broken-plugins) failed in __init__: RuntimeError: cannot allocate the frobnicator"),
    ("__init__ refuses its config", ["--updater", "refuses-config"],
     "updater 'refuses-config' (broken-plugins) refused its config: hidden must be even"),
    ("forward raises", ["--updater", "raises-in-forward"],
     "updater 'raises-in-forward' (tests.test_bad_input.RaisesInForward) failed in forward (with network 'fc'): IndexError: index 7 is out of bounds"),
    ("updater psi shape", ["--updater", "wrong-shape"],
     "updater 'wrong-shape' returned psi of shape (2, 3, 28, 1, 1); expected (B, K, H, W, C) = (2, 3, 28, 28, 1)"),
    ("updater not a tuple", ["--updater", "not-a-tuple"],
     "updater 'not-a-tuple' returned Tensor from forward; expected a tuple (psi, state)"),
    ("updater state shape", ["--updater", "wrong-state"],
     "updater 'wrong-state' returned a state of shape (1, 3, 16); expected the initial state's shape = (2, 3, 16)"),
    ("network decode shape, blamed on the network", ["--network", "narrow-decoder"],
     "network 'narrow-decoder' returned a decoding of shape (6, 28, 27, 1); expected (N, H, W, C) = (6, 28, 28, 1)"),
    ("likelihood shape", ["--likelihood", "short-likelihood"],
     "likelihood 'short-likelihood' returned probabilities of shape (2, 3, 28, 1, 1); expected (B, K, H, W, 1) = (2, 3, 28, 28, 1)"),
    ("noise shape", ["--set", "noise.name=shape-noise"],
     "noise 'shape-noise' returned noisy inputs of shape (2, 1, 28, 28, 1); expected the input's shape = (2, 2, 28, 28, 1)"),
    ("dataset features shape", ["--dataset", "small-frames"],
     "dataset 'small-frames' returned features from split('train').get of shape (2, 1, 27, 27, 1); expected (batch, frames, H, W, C) = (2, 1, 28, 28, 1)"),
    ("dataset split type", ["--dataset", "no-split"],
     "dataset 'no-split' returned list from split('train'); expected a grouping.plugin_api.interfaces.Split"),
    ("dataset missing file", ["--dataset", "missing-file"],
     "dataset 'missing-file' (tests.test_bad_input.MissingFile) failed in split('train'): FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/shapes.npz'"),
    ("split smaller than a batch", ["--dataset", "ten-samples"],
     "the training split holds 10 samples, fewer than train.batch_size (32); use a smaller --batch-size"),
    ("dataset image_shape", ["--dataset", "bad-image-shape"],
     "dataset 'bad-image-shape' has image_shape (28, 28); expected (H, W, C) > 0"),
]  # fmt: skip


@pytest.fixture
def broken_plugins(register_plugin: Callable[[Any, str], None]) -> None:
    mod = types.ModuleType("broken_plugins")
    for hook, classes in BROKEN.items():
        setattr(
            mod, hook, hookimpl(lambda register, classes=classes: [register(c) for c in classes])
        )
    register_plugin(mod, "broken-plugins")


@pytest.mark.parametrize(
    ("args", "expected"), [c[1:] for c in PLUGIN_CASES], ids=[c[0] for c in PLUGIN_CASES]
)
def test_a_plugin_that_raises_or_returns_the_wrong_thing_is_named_in_one_line(
    broken_plugins: None, args: list[str], expected: str, tmp_path: Path
) -> None:
    result = invoke([*SET_TINY, *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {expected}"], result.output
    assert result.output.strip().splitlines()[-1] == errors[0]


def test_a_plugin_hook_that_raises_is_named_and_does_not_block_a_run(
    register_plugin: Callable[[Any, str], None], tmp_path: Path
) -> None:
    mod = types.ModuleType("raising_hook")
    mod.register_updaters = hookimpl(_register_raises)  # type: ignore[attr-defined]
    register_plugin(mod, "raising-hook")
    result = invoke([*SET_TINY, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (
        "warning: plugin 'raising-hook' is broken: failed in register_updaters: RuntimeError: "
        "import of an optional dependency failed; exclude it with GROUPING_PLUGINS=-raising-hook"
    ) in result.output


def test_the_python_api_raises_grouping_errors_with_the_cause_chained(
    broken_plugins: None, tmp_path: Path
) -> None:
    config = build_config("quickstart", assignments=[*TINY, "updater.name=raises-in-forward"])
    with pytest.raises(GroupingError) as err:
        train(config, tmp_path / "run")
    assert isinstance(err.value.__cause__, IndexError)  # for a debugger, not for the user


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing", None, "does not exist; expected a folder with MNIST"),
        ("train-images-idx3-ubyte", b"\x00\x00\x08\x03\x00\x00\x00\x05", ""),
        ("digits.npz", b"not a zip file at all", ""),
    ],
)
def test_missing_or_corrupt_data_files_are_one_line(
    tmp_path: Path, name: str, content: bytes | None, expected: str
) -> None:
    from grouping_plugins.sources.mnist import load_digits

    from grouping.errors import DataError

    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        load_digits(path if name != "train-images-idx3-ubyte" else tmp_path, "train")
    assert "\n" not in str(err.value) and expected in str(err.value)
