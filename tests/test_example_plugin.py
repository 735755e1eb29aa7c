"""The third-party plugin path, end to end: the example package in examples/grouping-laplace is
pip-installed (``.ci/run`` does it), listed with its package and version, and trained through the CLI.

Without the example installed these tests skip, unless GROUPING_REQUIRE_EXAMPLE=1 (set by CI), where
they fail: a CI run must never skip them.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from PIL import Image

from grouping.cli.main import cli
from grouping.figures.resolution import DPI
from tests.conftest import TINY
from tests.examples import assert_listed, example_version, require_example

EXAMPLE = require_example("grouping-laplace", "grouping_laplace")


def test_list_plugins_shows_the_example_with_its_package_and_version() -> None:
    version = example_version(EXAMPLE, "grouping-laplace")
    assert_listed(
        "grouping-laplace",
        version,
        {("likelihood", "laplace"): "laplace", ("dataset", "colour-sprites"): "colour-sprites"},
    )


def test_run_trains_the_new_likelihood_on_the_new_data_set(tmp_path: Path) -> None:
    out = tmp_path / "laplace"
    args = ["run", *[a for item in TINY for a in ("--set", item)], "--set", "noise.name=auto"]
    args += ["--likelihood", "laplace", "--dataset", "colour-sprites", "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1
    assert summary["config"]["likelihood"]["name"] == "laplace"
    assert summary["config"]["dataset"]["name"] == "colour-sprites"
    assert summary["config"]["noise"]["name"] == "none"  # laplace's default_noise
    assert summary["data_source"]["dataset"] == "colour-sprites"
    assert -1.0 <= summary["test"]["ami"] <= 1.0
    with Image.open(out / "figure.png") as image:
        # 4 samples; input, psi 1..3, gamma, truth: 4.75 x 6.25 in at the default dpi
        assert image.size == (19 * DPI // 4, 25 * DPI // 4)
