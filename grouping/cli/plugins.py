"""``grouping list-plugins``: every plugin with its kind and package, and the broken ones."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from grouping.errors import one_line
from grouping.plugins.registry import get_registry

out_console = Console()
err_console = Console(stderr=True)


@click.command("list-plugins")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def list_plugins(as_json: bool) -> None:
    """List every registered likelihood, network, updater, data set and noise."""
    registry = get_registry()
    rows = registry.rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="grouping plugins")
    for col in ("kind", "name", "description", "package"):
        table.add_column(col)
    for row in rows:
        package = f"{row['package']} {row['version']}" if row["package"] else row["plugin"]
        if row.get("error") is None:
            table.add_row(row["kind"], row["name"], row["description"], package)
    out_console.print(table)
    warn_broken(rows)


def warn_broken(rows: list[dict[str, Any]] | None = None) -> None:
    """One line on stderr per broken plugin, saying how to leave it out."""
    for row in get_registry().rows() if rows is None else rows:
        if row.get("error") is not None:
            click.echo(
                f"warning: plugin {row['plugin']!r} is broken: {one_line(row['error'], 500)}; "
                f"exclude it with GROUPING_PLUGINS=-{row['plugin']}",
                err=True,
            )
