"""``grouping evaluate``: score a trained run folder, possibly with another K, steps or data set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from grouping.cli.output import console, progress_bar
from grouping.evaluation.api import evaluate
from grouping.evaluation.separation import format_quartiles
from grouping.plugin_api.interfaces import SPLITS
from grouping.rundir.loading import CHECKPOINTS


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--dataset", help="another data set plugin (its options via --set dataset.KEY=V)")
@click.option("-k", "--components", type=int, help="K for evaluation (weights are shared)")
@click.option("--steps", type=int, help="T, EM steps to unroll (may exceed training's)")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option(
    "--checkpoint",
    type=click.Choice(CHECKPOINTS),
    help="best or last (default: the one the run tested, train.test_checkpoint)",
)
@click.option("--device", help="auto, cpu, cuda or cuda:N (default: the run's)")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a config key, e.g. --set dataset.objects=5 (repeatable)",
)
@click.option("--json", "as_json", is_flag=True, help="print the scores as JSON")
def evaluate_command(
    run_dir: Path,
    dataset: str | None,
    components: int | None,
    steps: int | None,
    split: str,
    checkpoint: str | None,
    device: str | None,
    assignments: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score a trained run folder (or pretrained:NAME, a model shipped in the package), possibly
    with another K, step count or data set. --set eval.samples=N scores the split's first N."""
    with progress_bar(f"scoring the {split} split", "samples", quiet=as_json) as on_progress:
        result = evaluate(
            run_dir,
            dataset=dataset,
            components=components,
            steps=steps,
            assignments=assignments,
            split=split,  # type: ignore[arg-type]
            checkpoint=checkpoint or "auto",  # type: ignore[arg-type]
            device=device,
            on_progress=on_progress,
        )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        _print_scores(result, split, result["checkpoint"])


def _print_scores(result: dict[str, Any], split: str, checkpoint: str) -> None:
    """The scores as a table, then AMI per step, the upper bound and what changed from the run's
    own config."""
    out = console()
    changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in result["changed"].items())
    table = Table(title=f"{split} scores ({result['images']} samples, {checkpoint} checkpoint)")
    for col in ("", "last step", "mean over steps"):
        table.add_column(col)
    for name in ("ami", "ari"):
        table.add_row(
            name.upper(),
            f"{result[name]:.3f} ± {result[name + '_std']:.3f}",
            f"{result[name + '_mean_over_steps']:.3f} ± "
            f"{result[name + '_mean_over_steps_std']:.3f}",
        )
    out.print(table)
    per_step = " ".join(f"{v:.2f}" for v in result["ami_per_step"])
    out.print(f"AMI per step: {per_step}")
    out.print(f"upper bound (last step): {result['upper_bound']:.2f}")
    cells = format_quartiles(result["ami_by_separation"])
    if cells:
        out.print(f"last-step AMI by the objects' distance (quartiles): {cells}")
    out.print(f"changed from training: {changed or 'nothing'}")
