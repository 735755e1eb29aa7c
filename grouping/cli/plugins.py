"""``grouping list-plugins``: every plugin with its kind and package, and the broken ones;
``--options`` (or ``KIND NAME``) adds each plugin's options with their types, defaults and meanings."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import click
from rich.table import Table

from grouping.cli.output import console
from grouping.config.options import plugin_options, shown_default
from grouping.errors import PluginError, one_line
from grouping.plugin_api.interfaces import PluginKind
from grouping.plugin_api.kinds import KINDS
from grouping.plugin_api.registry import Registry, get_registry

#: How plugin descriptions cite the method's write-up ("spec 6.4"); the listing names the file.
SPEC_SECTION = re.compile(r"\bspec (\d+(?:\.\d+)*)")


@click.command("list-plugins")
@click.argument("kind", required=False)
@click.argument("name", required=False)
@click.option(
    "--options",
    "show_options",
    is_flag=True,
    help="each plugin's options (--set KIND.OPTION=...): type, default, bounds, description",
)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def list_plugins(kind: str | None, name: str | None, show_options: bool, as_json: bool) -> None:
    """List every registered likelihood, network, updater, data set and noise; KIND lists one
    kind, KIND NAME one plugin with its options."""
    registry = get_registry()
    rows = [where_described(row) for row in selected_rows(registry, kind, name)]
    if show_options or name:
        rows = [with_options(registry, row) for row in rows]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if show_options or name:
        print_options(rows)
        warn_broken(rows)
        return
    table = Table(title="grouping plugins")
    for col in ("kind", "name", "description", "package"):
        table.add_column(col)
    for row in rows:
        package = f"{row['package']} {row['version']}" if row["package"] else row["plugin"]
        if row.get("error") is None:
            table.add_row(row["kind"], row["name"], row["description"], package)
    console().print(table)
    warn_broken(rows)


def where_described(row: dict[str, Any]) -> dict[str, Any]:
    """The row with its description's "spec 6.4" saying where: "docs/method.md section 6.4"."""
    text = row.get("description")
    if not isinstance(text, str):
        return row
    return {**row, "description": SPEC_SECTION.sub(r"docs/method.md section \1", text)}


def selected_rows(registry: Registry, kind: str | None, name: str | None) -> list[dict[str, Any]]:
    """The rows of every plugin, of one kind, or of one plugin; a one-line error for an unknown
    kind or name (with the valid ones)."""
    rows = registry.rows()
    if kind is None:
        return rows
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind {kind!r}; valid: {', '.join(KINDS)}")
    if name is not None:
        registry.get(cast(PluginKind, kind), name)  # raises for an unknown name, listing the valid
    return [r for r in rows if r["kind"] == kind and name in (None, r["name"])]


def with_options(registry: Registry, row: dict[str, Any]) -> dict[str, Any]:
    """The row with its plugin's ``options`` (``grouping.config.options``); a broken plugin has
    none to list."""
    info = registry.plugins().get((row["kind"], row["name"]))
    if row["kind"] is None or info is None:
        return row
    return {**row, "options": plugin_options(info.kind, info.cls)}


def print_options(rows: list[dict[str, Any]]) -> None:
    """One table per plugin: each option as ``--set`` names it, its type and bounds, its default
    and what it means (the core options every plugin of the kind has come first)."""
    for row in rows:
        if "options" not in row:
            continue
        table = Table(
            title=f"{row['kind']} {row['name']}: {row['description']}", title_justify="left"
        )
        for col in ("option", "type", "default", "description"):
            table.add_column(col)
        for option in row["options"]:
            bounds = f" ({option['bounds']})" if option["bounds"] else ""
            table.add_row(
                option["key"],
                option["type"] + bounds,
                shown_default(option),
                option["description"],
                style="dim" if option["core"] else None,
            )
        console().print(table)


def warn_broken(rows: list[dict[str, Any]] | None = None) -> None:
    """One line on stderr per broken plugin, saying how to leave it out."""
    for row in get_registry().rows() if rows is None else rows:
        if row.get("error") is not None:
            click.echo(
                f"warning: plugin {row['plugin']!r} is broken: {one_line(row['error'], 500)}; "
                f"exclude it with GROUPING_PLUGINS=-{row['plugin']}",
                err=True,
            )
