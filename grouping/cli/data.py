"""``grouping data check`` and ``grouping data export``: validate a data file, freeze a data set."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from grouping.cli.output import console
from grouping.cli.run import options_to_overrides
from grouping.config.loading import build_config


@click.group("data")
def data_group() -> None:
    """Check data files; export data sets in the original N-EM HDF5 layout."""


@data_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def data_check(path: Path, as_json: bool) -> None:
    """Validate a data file (.h5 in the original layout, or .npz) before training on it."""
    from grouping.data.tools import check_file

    report = check_file(path)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        table = Table(
            title=f"{path}: {report.layout}",
            caption="dtypes: features / groups; background: label 0, all channels 0; "
            "overlap: label 0 elsewhere; objects: most labels in one frame",
        )
        table.add_column("")
        rows = [split.as_dict() for split in report.splits]
        for row in rows:
            table.add_column(row["split"], justify="right")
        cells: dict[str, Callable[[dict[str, Any]], str]] = {
            "samples": lambda r: f"{r['samples']:,}",
            "frames": lambda r: str(r["frames"]),
            "H x W x C": lambda r: "x".join(str(v) for v in r["image_shape"]),
            "dtypes": lambda r: f"{r['features_dtype']} / {r['groups_dtype']}",
            "values": lambda r: (
                "[{:g}, {:g}]".format(*r["value_range"]) + (" binary" if r["binary"] else "")
            ),
            "labels": lambda r: "[{:g}, {:g}]".format(*r["label_range"]),
            "background": lambda r: f"{r['background_share']:.1%}",
            "overlap": lambda r: f"{r['overlap_share']:.1%}",
            "objects (max)": lambda r: str(r["objects_max"]),
        }
        for label, cell in cells.items():
            table.add_row(label, *(cell(row) for row in rows))
        console().print(table)
    for defect in report.defects:
        click.echo(f"error: {defect}", err=True)
    if not report.ok:
        raise click.exceptions.Exit(2)
    if not as_json:
        console().print("ok: no defects found")


@data_group.command("export")
@click.option("--dataset", required=True, help="data set plugin, e.g. shapes")
@click.option("--preset", help="preset whose sizes and seed to use (default: quickstart)")
@click.option("--train-size", type=int)
@click.option("--valid-size", type=int)
@click.option("--test-size", type=int)
@click.option("--steps", type=int, help="T; a sequential set stores steps + 1 frames")
@click.option("--seed", type=int)
@click.option(
    "--set", "assignments", multiple=True, metavar="KEY=VALUE", help="e.g. dataset.objects=4"
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="the .h5 file to write")
@click.option("--force", is_flag=True, help="overwrite --out if it exists")
def data_export(
    preset: str | None, assignments: tuple[str, ...], out: Path, force: bool, **opts: Any
) -> None:
    """Write a data set's train, validation and test splits in the original N-EM HDF5 layout."""
    from grouping.data.tools import export_dataset

    config = build_config(preset, options_to_overrides(opts), list(assignments))
    result = export_dataset(config, out, overwrite=force)
    sizes = ", ".join(f"{name} {n}" for name, n in result.samples.items())
    h, w, c = result.image_shape
    kind = "binary" if result.binary else "grey"
    console().print(
        f"wrote {result.path}: {sizes} samples, {result.frames} frame(s) of {h}x{w}x{c} ({kind})"
    )
