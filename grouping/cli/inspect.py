"""The commands that look at runs: ``visualize``, ``plot`` and ``runs``. Thin: each parses its options,
calls :mod:`grouping.figures` or :mod:`grouping.rundir.listing` and prints. ``grouping.cli`` adds
them to the ``grouping`` group."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from grouping.cli.output import console, progress_bar
from grouping.figures.curves import plot
from grouping.figures.groupings import visualize
from grouping.figures.resolution import DPI, MAX_DPI, MAX_STEP_COLUMNS
from grouping.plugin_api.interfaces import SPLITS
from grouping.rundir.listing import runs

dpi_option = click.option(
    "--dpi",
    type=click.IntRange(1, MAX_DPI),
    default=DPI,
    show_default=True,
    help="dots per inch of the PNG (300 or 600 for print)",
)

columns_option = click.option(
    "--columns",
    type=click.IntRange(min=0),
    default=MAX_STEP_COLUMNS,
    show_default=True,
    help="sequences: the most EM steps drawn side by side, evenly spaced with the last; 0: all",
)


@click.command("visualize")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option(
    "--samples", type=click.IntRange(min=1), help="samples to draw (default: 4 images, 2 sequences)"
)
@click.option("--steps", type=click.IntRange(min=1), help="EM steps to unroll (default: the run's)")
@click.option("--seed", type=int, default=0, show_default=True, help="noise and gamma^(0) seed")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="file to write (default RUN_DIR/figure-visualize.png or .gif; the run's figure.png stays)",
)
@click.option(
    "--gif", is_flag=True, help="an animated GIF, one frame per EM step (drawn in pixels)"
)
@columns_option
@dpi_option
def visualize_command(
    run_dir: Path,
    split: str,
    samples: int | None,
    steps: int | None,
    seed: int,
    out: Path | None,
    gif: bool,
    columns: int,
    dpi: int,
) -> None:
    """Draw a trained run's (or pretrained:NAME's) groupings: inputs, per-component predictions,
    gamma, ground truth.

    Static data: one column per sample (the paper's Figure 3). Sequences: one column per EM step
    (at most --columns) and a block of rows per sample (Figures 4 and 7). --gif: one frame per EM
    step, a row per sample. The square beside "psi k" is the colour gamma gives component k.
    """
    with progress_bar("drawing", "stages") as on_progress:
        path = visualize(
            str(run_dir),
            split=split,  # type: ignore[arg-type]
            samples=samples,
            steps=steps,
            out=out,
            seed=seed,
            gif=gif,
            dpi=dpi,
            columns=columns or None,
            on_progress=on_progress,
        )
    click.echo(str(path))


@click.command("plot")
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--evaluation",
    "evaluations",
    multiple=True,
    type=click.Path(path_type=Path),
    help="a `grouping evaluate --json` file to add to the AMI-per-step panel (repeatable)",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="PNG path (default: curves.png in the first RUN_DIR, else in the current folder)",
)
@dpi_option
def plot_command(
    run_dirs: tuple[Path, ...], evaluations: tuple[Path, ...], out: Path | None, dpi: int
) -> None:
    """Training curves of one or more runs, overlaid: loss, validation AMI, images/s per epoch,
    and the test AMI per EM step with its quartiles."""
    if out is None:  # beside the runs it shows, not wherever the command happens to run
        out = (run_dirs[0] if run_dirs else Path()) / "curves.png"
    click.echo(str(plot(run_dirs, out=out, evaluations=evaluations, dpi=dpi)))


def _num(value: float | int | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


@click.command("runs")
@click.argument("folder", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def runs_command(folder: Path, as_json: bool) -> None:
    """List the runs in FOLDER (default: runs): preset, plugins, epochs, best validation loss,
    test AMI and wall time. A run without summary.json is shown as unfinished."""
    rows = runs(folder)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    table = Table(title=f"runs in {folder} ({len(rows)})")
    columns = ("run", "preset", "updater", "likelihood", "dataset")
    for col in columns:
        table.add_column(col)
    for col in ("epochs", "best valid loss", "test AMI", "wall"):
        table.add_column(col, justify="right")
    table.add_column("status")
    for r in rows:
        table.add_row(
            r.name,
            r.preset or "-",
            r.updater or "-",
            r.likelihood or "-",
            r.dataset or "-",
            _num(r.epochs, "d"),
            _num(r.best_valid_loss, ".3f"),
            _num(r.test_ami, ".3f"),
            "-" if r.wall_s is None else f"{r.wall_s:.0f} s",
            r.status if r.finished else f"[yellow]{r.status}[/yellow]",
        )
    console().print(table)


COMMANDS = (visualize_command, plot_command, runs_command)
