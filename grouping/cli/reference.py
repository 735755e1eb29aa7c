"""The command-line reference, ``docs/cli.md``, rendered from every command's own ``--help``.

The page is generated rather than written so that it cannot drift from the code:
``tests/test_cli_docs.py`` renders it again and compares. Regenerate it with
``python -m grouping.cli.reference --write``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

#: The help text's wrap width: fixed, so the page does not depend on the terminal it is made in.
WIDTH = 100
#: Where the page lives, relative to the repository root.
PAGE = Path("docs") / "cli.md"
REGENERATE = "python -m grouping.cli.reference --write"

HEADER = f"""# Command-line reference

Every `grouping` command's `--help`, as the installed version prints it. This page is generated,
so do not edit it by hand: after changing a command, run

    {REGENERATE}

(`tests/test_cli_docs.py` fails while the page is stale). The
[README](../README.md#command-line) has the short synopsis.
"""


def _walk(
    command: click.Command, path: list[str], parent: click.Context | None
) -> list[tuple[list[str], str]]:
    """(command path, help text) of ``command`` and, for a group, of every subcommand in order."""
    settings = {**command.context_settings, "max_content_width": WIDTH, "terminal_width": WIDTH}
    ctx = click.Context(command, info_name=path[-1], parent=parent, **settings)
    out = [(path, command.get_help(ctx))]
    if isinstance(command, click.Group):
        for name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                out += _walk(sub, [*path, name], ctx)
    return out


def _anchor(path: list[str]) -> str:
    """The GitHub-style anchor of a ``## `grouping run` `` heading."""
    return "-".join(path).lower()


def render(root: click.Command | None = None) -> str:
    """The whole page: a contents list, then one section per command with its help text."""
    if root is None:
        from grouping.cli.main import cli

        root = cli
    entries = _walk(root, ["grouping"], None)
    lines = [HEADER]
    lines += [f"- [`{' '.join(p)}`](#{_anchor(p)})" for p, _ in entries]
    for path, text in entries:
        lines += ["", f"## `{' '.join(path)}`", "", "```text", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the page, or with ``--write`` write it to ``docs/cli.md`` under the current folder."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--write" in args:
        target = Path.cwd() / PAGE
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
