"""Data values are checked where they enter the core: finite features inside the likelihood's
support, integral groups >= 0; each violation is one line naming the data set plugin."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import torch
from click.testing import CliRunner

from grouping import hookimpl
from grouping.cli import cli
from grouping.plugins import ArraySplit, Dataset, PluginConfig, Split, SplitName, cached_split


class BadValues(Dataset):
    """Shapes-sized random data whose features or groups break one rule, chosen by ``fault``."""

    name = "bad-values"
    description = "test data set with out-of-range values"
    default_likelihood: ClassVar[str | None] = "bernoulli"

    class Config(PluginConfig):
        fault: str = "none"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (28, 28, 1)

    @property
    def binary(self) -> bool:
        return True

    @cached_split
    def split(self, name: SplitName) -> Split:
        n = self.sizes[name]
        g = torch.Generator().manual_seed(0)
        features = (torch.rand(n, 1, 28, 28, 1, generator=g) > 0.5).float()
        groups = torch.randint(0, 4, (n, 1, 28, 28), generator=g)
        fault = self.config.fault  # type: ignore[attr-defined]
        if fault == "bytes":
            features = features * 255.0
        elif fault == "not-finite":
            features[0, 0, 0, 0, 0] = float("nan")
        elif fault == "negative-groups":
            groups[0, 0, 0, 0] = -1
        return ArraySplit(features, groups)


@hookimpl
def _register(register: Any) -> None:
    register(BadValues)


@pytest.fixture
def bad_values(register_plugin: Callable[[Any, str], None]) -> None:
    mod = types.ModuleType("bad_values")
    mod.register_datasets = _register  # type: ignore[attr-defined]
    register_plugin(mod, "bad-values")


def run(fault: str, tmp: Any) -> Any:
    args = ["run", "--dataset", "bad-values", "--set", f"dataset.fault={fault}"]
    args += ["--epochs", "1", "--train-size", "32", "--valid-size", "32", "--test-size", "32"]
    args += ["--set", "train.batch_size=32", "--set", "model.steps=2", "--out", str(tmp / "r")]
    return CliRunner().invoke(cli, args)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("bytes", "outside [0, 1] (likelihood 'bernoulli' needs them): min 0, max 255; scale"),
        ("not-finite", "outside [0, 1] (likelihood 'bernoulli' needs them): min nan"),
        ("negative-groups", "groups from split('train').get below 0 (min -1)"),
    ],
)
def test_bad_values_are_one_line_naming_the_plugin(
    bad_values: None, tmp_path: Any, fault: str, expected: str
) -> None:
    result = run(fault, tmp_path)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(errors) == 1, result.output
    assert errors[0].startswith("error: dataset 'bad-values' returned ")
    assert expected in errors[0]
    assert "Traceback" not in result.output


def test_good_values_train(bad_values: None, tmp_path: Any) -> None:
    assert run("none", tmp_path).exit_code == 0


def test_a_folder_whose_run_failed_before_its_first_checkpoint_can_be_run_into_again(
    bad_values: None, tmp_path: Any
) -> None:
    assert run("bytes", tmp_path).exit_code == 2  # leaves r/config.toml, no checkpoint
    assert (tmp_path / "r" / "config.toml").is_file()
    resumed = CliRunner().invoke(cli, ["run", "--resume", str(tmp_path / "r")])
    assert resumed.exit_code == 2
    assert f"start it again in the same folder: grouping run --preset {tmp_path}/r/config.toml" in (
        resumed.output
    )
    again = run("none", tmp_path)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "r" / "summary.json").is_file()
