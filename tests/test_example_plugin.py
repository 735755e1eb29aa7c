"""The third-party plugin path, end to end: the example package in examples/grouping-laplace is
pip-installed (``.ci/run`` does it), listed with its package and version, and trained through the CLI.

Without the example installed these tests skip, unless GROUPING_REQUIRE_EXAMPLE=1 (set by CI), where
they fail: a CI run must never skip them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from grouping.cli.main import cli
from tests.conftest import TINY

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "grouping-laplace"
INSTALL = f"pip install -e {EXAMPLE.relative_to(EXAMPLE.parents[1])}"

if importlib.util.find_spec("grouping_laplace") is None:
    if os.environ.get("GROUPING_REQUIRE_EXAMPLE") == "1":
        raise RuntimeError(f"the example plugin is not installed; run: {INSTALL}")
    pytest.skip(f"the example plugin is not installed ({INSTALL})", allow_module_level=True)


def example_version() -> str:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == "grouping-laplace"
    return str(project["version"])


def test_list_plugins_shows_the_example_with_its_package_and_version() -> None:
    result = CliRunner().invoke(cli, ["list-plugins", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.output)}
    version = example_version()
    for key, entry_point in (
        (("likelihood", "laplace"), "laplace"),
        (("dataset", "colour-sprites"), "colour-sprites"),
    ):
        row = rows[key]
        assert (row["package"], row["version"], row["plugin"]) == (
            "grouping-laplace",
            version,
            entry_point,
        )
        assert row["description"]


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
        assert image.size == (60 + 4 * 80, 20 + 6 * 80)  # 4 samples; input, psi 1..3, gamma, truth
