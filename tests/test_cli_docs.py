"""``docs/cli.md`` is every command's ``--help`` as the code prints it now, so it cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from grouping.cli import cli, reference

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / reference.PAGE


def test_docs_cli_md_is_the_current_help() -> None:
    assert PAGE.read_text(encoding="utf-8") == reference.render(), (
        f"docs/cli.md is stale: run `{reference.REGENERATE}` in the repository root"
    )


def test_every_command_has_a_section() -> None:
    text = PAGE.read_text(encoding="utf-8")
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        assert f"## `grouping {name}`" in text
    assert "## `grouping data check`" in text  # subcommands of a group too


@pytest.mark.parametrize("command", [["run"], ["evaluate"], ["data", "check"], ["segment"]])
def test_the_page_holds_what_help_prints(command: list[str]) -> None:
    """The page is click's own text: what ``grouping ... --help`` prints at the terminal's width
    is on the page once line breaks and indents are collapsed."""
    page = re.sub(r"\s+", " ", PAGE.read_text(encoding="utf-8"))
    out = CliRunner().invoke(cli, [*command, "--help"], prog_name="grouping").output
    assert out.startswith(f"Usage: {' '.join(['grouping', *command])} ")
    assert re.sub(r"\s+", " ", out).strip() in page


def test_a_new_option_makes_the_page_stale() -> None:
    @click.group()
    def root() -> None:
        """A root."""

    @root.command("go")
    @click.option("--fast", is_flag=True, help="go fast")
    def go(fast: bool) -> None:
        """Go."""

    before = reference.render(root)
    go.params.append(click.Option(["--slow"], is_flag=True, help="go slow"))
    after = reference.render(root)
    assert "--slow" in after and "--slow" not in before
    assert "## `grouping go`" in after


def test_regenerating_writes_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "docs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert reference.main(["--write"]) == 0
    assert (tmp_path / "docs" / "cli.md").read_text(encoding="utf-8") == reference.render()
