"""What the tests of the example plugin packages (examples/*) share: find the package or skip
(fail under CI), its version from its pyproject, and its rows in ``list-plugins --json``."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from grouping.cli.main import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def require_example(folder: str, module: str) -> Path:
    """The example's folder; skip the calling module when it is not installed, except under CI
    (GROUPING_REQUIRE_EXAMPLE=1), where a missing example is an error: CI never skips them."""
    path = EXAMPLES / folder
    install = f"pip install -e examples/{folder}"
    if importlib.util.find_spec(module) is None:
        if os.environ.get("GROUPING_REQUIRE_EXAMPLE") == "1":
            raise RuntimeError(f"the example plugin is not installed; run: {install}")
        pytest.skip(f"the example plugin is not installed ({install})", allow_module_level=True)
    return path


def example_version(path: Path, name: str) -> str:
    project = tomllib.loads((path / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == name
    return str(project["version"])


def assert_listed(package: str, version: str, plugins: dict[tuple[str, str], str]) -> None:
    """``list-plugins --json`` shows each (kind, name) from ``package`` at ``version`` through the
    entry point named, with a description."""
    result = CliRunner().invoke(cli, ["list-plugins", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    rows: dict[tuple[str, str], Any] = {
        (r["kind"], r["name"]): r for r in json.loads(result.output)
    }
    for key, entry_point in plugins.items():
        row = rows[key]
        assert (row["package"], row["version"], row["plugin"]) == (package, version, entry_point)
        assert row["description"]
