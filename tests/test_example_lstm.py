"""The second third-party example, end to end: the package in examples/grouping-lstm (an updater
and a network) is pip-installed, listed with its package and version, and trained through the CLI.

Without the example installed these tests skip, unless GROUPING_REQUIRE_EXAMPLE=1 (set by CI), where
they fail: a CI run must never skip them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from grouping.cli.main import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "grouping-lstm"
INSTALL = f"pip install -e {EXAMPLE.relative_to(EXAMPLE.parents[1])}"

if importlib.util.find_spec("grouping_lstm") is None:
    if os.environ.get("GROUPING_REQUIRE_EXAMPLE") == "1":
        raise RuntimeError(f"the example plugin is not installed; run: {INSTALL}")
    pytest.skip(f"the example plugin is not installed ({INSTALL})", allow_module_level=True)


def example_version() -> str:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "grouping-lstm"
    return str(project["version"])


def test_list_plugins_shows_the_example_with_its_package_and_version() -> None:
    result = CliRunner().invoke(cli, ["list-plugins", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.output)}
    version = example_version()
    assert version == "0.1.0"
    for key, entry_point in (
        (("updater", "lstm-em"), "lstm-em"),
        (("network", "lstm-fc"), "lstm-fc"),
    ):
        row = rows[key]
        assert (row["package"], row["version"], row["plugin"]) == (
            "grouping-lstm",
            version,
            entry_point,
        )
        assert row["description"]


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
