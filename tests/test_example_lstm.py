"""The second third-party example, end to end: the package in examples/grouping-lstm (an updater
and a network) is pip-installed, listed with its package and version, and trained through the CLI.

Without the example installed these tests skip, unless GROUPING_REQUIRE_EXAMPLE=1 (set by CI), where
they fail: a CI run must never skip them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from click.testing import CliRunner

from grouping.cli.main import cli
from tests.examples import assert_listed, example_version, require_example

EXAMPLE = require_example("grouping-lstm", "grouping_lstm")


def test_list_plugins_shows_the_example_with_its_package_and_version() -> None:
    version = example_version(EXAMPLE, "grouping-lstm")
    assert version == "0.1.0"
    assert_listed(
        "grouping-lstm",
        version,
        {("updater", "lstm-em"): "lstm-em", ("network", "lstm-fc"): "lstm-fc"},
    )


def test_run_trains_the_lstm_updater_and_network_for_one_epoch(tmp_path: Path) -> None:
    out = tmp_path / "lstm"
    args = ["run", "--updater", "lstm-em", "--network", "lstm-fc", "--epochs", "1"]
    args += ["--train-size", "128", "--valid-size", "64", "--test-size", "64", "--steps", "3"]
    args += ["--batch-size", "32", "--out", str(out)]
    for item in ("train.threads=1", "train.valid_samples=64", "network.hidden=16"):
        args += ["--set", item]
    args += ["--set", "train.max_minutes=null"]  # never a wall-clock limit in tests
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert summary["config"]["updater"]["name"] == "lstm-em"
    assert summary["config"]["network"]["name"] == "lstm-fc"
    assert summary["config"]["network"]["hidden"] == 16
    ami = summary["test"]["ami"]
    assert isinstance(ami, float) and math.isfinite(ami) and -1.0 <= ami <= 1.0
