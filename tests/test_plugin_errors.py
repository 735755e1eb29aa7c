"""A broken third-party plugin never blocks the toolkit: real entry points on the path, real CLI
subprocesses. ``--debug`` and ``GROUPING_TRACE_PLUGINS`` show what went on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DUPLICATE = """
from grouping.plugins import RegisterUpdater, Updater, hookimpl


class Impostor(Updater):
    name = "rnn-em"
    description = "a second rnn-em"

    def forward(self, u, state):
        return u, state


@hookimpl
def register_updaters(register: RegisterUpdater) -> None:
    register(Impostor)
"""
MISSPELT = """
from grouping.plugins import hookimpl


@hookimpl
def register_updater(register):  # sic: the hook is register_updaters
    pass
"""


def install(tmp: Path, entry: str, source: str) -> dict[str, str]:
    """A module and a dist-info with a ``grouping`` entry point on PYTHONPATH: what pip would
    leave, without pip."""
    module = entry.replace("-", "_")
    (tmp / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    dist = tmp / "grouping_broken-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: grouping-broken\nVersion: 0.1\n", encoding="utf-8"
    )
    (dist / "entry_points.txt").write_text(f"[grouping]\n{entry} = {module}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPING_")}
    return env | {"PYTHONPATH": os.pathsep.join([str(tmp), env.get("PYTHONPATH", "")])}


def grouping(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grouping", *args], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip


def rows(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout) if row.get("error")}


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_plugin_that_fails_to_import_is_listed_with_its_error(tmp_path: Path) -> None:
    env = install(tmp_path, "broken-import", "raise ImportError('needs libfoo')\n")
    broken = rows(grouping(env, "list-plugins", "--json"))["broken-import"]
    assert broken["error"] == "ImportError: needs libfoo"
    assert (broken["package"], broken["version"]) == ("grouping-broken", "0.1")
    line = one_line_error(grouping(env, "run", "--updater", "broken-import"))
    assert line.startswith("error: unknown updater 'broken-import'; valid: ")
    assert line.endswith("(plugin 'broken-import' failed to load: ImportError: needs libfoo)")


def test_a_duplicate_name_blocks_only_its_own_use(tmp_path: Path) -> None:
    env = install(tmp_path, "dupe", DUPLICATE)
    listed = grouping(env, "list-plugins", "--json")
    assert "registered twice" in rows(listed)["rnn-em"]["error"]
    line = one_line_error(grouping(env, "run", "--updater", "rnn-em", "--epochs", "1"))
    assert "updater 'rnn-em' is registered twice" in line
    assert line.endswith("exclude one with GROUPING_PLUGINS=-dupe")
    assert rows(grouping(env | {"GROUPING_PLUGINS": "-dupe"}, "list-plugins", "--json")) == {}


def test_a_misspelt_hook_is_listed_not_fatal(tmp_path: Path) -> None:
    env = install(tmp_path, "typo", MISSPELT)
    typo = rows(grouping(env, "list-plugins", "--json"))["typo"]
    assert "register_updater" in typo["error"] and "unknown hook" in typo["error"]
    human = grouping(env, "list-plugins")
    assert human.returncode == 0
    assert "exclude it with GROUPING_PLUGINS=-typo" in human.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_adds_the_traceback_after_the_one_line(how: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPING_")}
    args = ["run", "--updater", "nope"]
    if how == "flag":
        result = grouping(env, "--debug", *args)
    else:
        result = grouping(env | {"GROUPING_DEBUG": "1"}, *args)
    assert result.returncode == 2
    first, *rest = result.stderr.strip().splitlines()
    assert first.startswith("error: unknown updater 'nope'")
    assert rest[0] == "Traceback (most recent call last):"
    assert "grouping.errors.PluginError" in rest[-1]


def test_trace_prints_hook_calls() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPING_")}
    result = grouping(env | {"GROUPING_TRACE_PLUGINS": "1"}, "list-plugins", "--json")
    assert result.returncode == 0
    assert "grouping plugins: " in result.stderr
    assert "register_updaters" in result.stderr
