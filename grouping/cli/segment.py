"""``grouping segment`` (a trained model on your own pictures) and ``grouping pretrained`` (the
models shipped in the package). Thin: options in, :mod:`grouping.figures.segment` does the work."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from grouping.cli.output import console, progress_bar
from grouping.figures.segment import segment
from grouping.rundir.folder import IN_PROGRESS
from grouping.rundir.pretrained import pretrained_models, shipped_record


class Printer:
    """Prints each record as it is written (a JSON line or a short line), each note once and each
    failed input as one ``error:`` line on stderr."""

    def __init__(self, as_json: bool, warn: Callable[[str], None] | None = None) -> None:
        self.as_json = as_json
        self.warn = warn or (lambda line: click.echo(line, err=True))
        self.failed: list[str] = []
        self.notes: set[str] = set()

    def record(self, rec: dict[str, Any]) -> None:
        for note in rec["notes"]:
            if note not in self.notes:
                self.notes.add(note)
                self.warn(f"note: {note}")
        if self.as_json:
            click.echo(json.dumps(rec))
        else:
            shares = " ".join(f"{s:.2f}" for s in rec["shares"])
            click.echo(f"{rec['input']}: {rec['outputs'][0]} (component shares {shares})")

    def error(self, line: str) -> None:
        self.failed.append(line)
        self.warn(f"error: {line}")


@click.command("segment")
@click.argument("run_dir")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="folder to write to")
@click.option("--steps", type=click.IntRange(min=1), help="T, EM steps (default: the run's)")
@click.option("-k", "--components", type=click.IntRange(min=1), help="K (default: the run's)")
@click.option(
    "--checkpoint",
    type=click.Choice(["best", "last"]),
    help="best or last (default: the one the run tested, train.test_checkpoint)",
)
@click.option("--resize", is_flag=True, help="scale pictures to the model's image size")
@click.option("--sequence", is_flag=True, help="a folder is the frames of one video")
@click.option("--noise/--no-noise", help="draw the run's noise on the inputs (default: clean)")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu, cuda or cuda:N")
@click.option("--json", "as_json", is_flag=True, help="print one JSON record per picture or video")
def segment_command(
    run_dir: str,
    inputs: tuple[Path, ...],
    out: Path,
    steps: int | None,
    components: int | None,
    checkpoint: str | None,
    resize: bool,
    sequence: bool,
    noise: bool,
    device: str,
    as_json: bool,
) -> None:
    """Split your own pictures into objects with a trained run (or pretrained:NAME).

    INPUTS are PNG or JPEG files, folders of them (sorted by name), animated GIFs (videos) or
    .npz files holding `features`. Writes NAME.labels.png (component 1..K per pixel),
    NAME.overlay.png and NAME.npz (gamma and psi per step) into --out; a video one file per frame
    and NAME.gif. A file that cannot be read is one line and skipped, the others still written
    (exit 2); an output never replaces an input or another output (a note names the new name).
    """
    # Where each picture's line reaches the terminal, the lines are the progress.
    quiet = as_json or console().is_terminal
    with progress_bar("segmenting", "inputs", quiet=quiet) as on_progress:
        printer = Printer(as_json, on_progress.echo)
        segment(
            run_dir, inputs, out, steps=steps, components=components,
            checkpoint=checkpoint or "auto",  # type: ignore[arg-type]
            resize=resize, sequence=sequence, noise=noise, device=device,
            on_record=printer.record, on_error=printer.error, on_progress=on_progress,
        )  # fmt: skip
    if printer.failed:
        raise click.exceptions.Exit(2)


@click.command("pretrained")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def pretrained_command(as_json: bool) -> None:
    """List the trained models shipped in the package, to use as RUN_DIR `pretrained:NAME`."""
    rows = [shipped_record(name) for name in pretrained_models()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        ami, over = (
            "-" if v is None else f"{v:.3f}"
            for v in (row["test_ami"], row["scores"]["mean_over_steps"])
        )
        paper = row["paper"]["ami"]
        running = "; its run was still training" if row["status"] == IN_PROGRESS else ""
        click.echo(
            f"{row['name']}  {row['dataset']}, {row['updater']}, test AMI {ami} (mean over steps "
            f"{over}){'' if paper is None else f', paper {paper:.3f}'}{running}"
        )
    if not rows:
        click.echo("no pretrained models are shipped in this installation")


COMMANDS = (segment_command, pretrained_command)
