"""The ``grouping`` command line. It only parses and prints: each command calls the Python API.

Bad input (an unknown plugin, an invalid config value, a missing file) is reported as one line on
stderr with exit code 2 and no traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from grouping import __version__, distributed
from grouping.build import resolve
from grouping.cli_inspect import COMMANDS
from grouping.config import DEFAULT_PRESET, assignments_to_dict, build_config, implied_preset
from grouping.errors import GroupingError, RunDirError, RunStopped, one_line
from grouping.evaluation import CHECKPOINTS, evaluate
from grouping.interfaces import SPLITS
from grouping.registry import get_registry
from grouping.resume import prepare_resume
from grouping.rundir import RunDir
from grouping.train import RunResult, train

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True)
out_console = Console()


class ProgressReporter:
    """Shows epochs and batches as rich progress bars and each epoch's record as one line."""

    def __init__(self, console: Console, epochs: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.epochs_task: TaskID = self.progress.add_task("epochs", total=epochs, info="")
        self.batch_task: TaskID | None = None

    def __enter__(self) -> ProgressReporter:
        return self  # the bars start with the first epoch: a set-up error stays one line

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:
            self.progress.stop()

    def message(self, text: str) -> None:
        self.console.print(text)

    def epoch_start(self, epoch: int, batches: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        if self.batch_task is not None:
            self.progress.remove_task(self.batch_task)
        self.batch_task = self.progress.add_task(f"epoch {epoch}", total=batches, info="")

    def batch_end(self, epoch: int, batch: int, loss: float) -> None:
        if self.batch_task is not None:
            self.progress.update(self.batch_task, completed=batch, info=f"loss {loss:8.2f}")

    def epoch_end(self, record: dict[str, Any]) -> None:
        self.progress.advance(self.epochs_task)
        mark = " *" if record.get("best") else ""
        self.console.print(
            f"epoch {record['epoch']:3d}  train loss {record['train_loss']:9.3f}  "
            f"valid loss {record['valid_loss']:9.3f}  valid AMI {record['valid_ami']:.3f}  "
            f"ARI {record['valid_ari']:.3f}  {record['images_per_s']:7.0f} img/s{mark}"
        )


class OneLineErrors(click.Group):
    """A click group that reports user errors, its own and click's, as one line with exit code 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except GroupingError as exc:
            click.echo(f"error: {one_line(str(exc), 2000)}", err=True)
            sys.exit(2)
        except RunStopped as exc:
            click.echo(one_line(str(exc), 2000), err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(130)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="grouping")
def cli() -> None:
    """Unsupervised perceptual grouping with Neural Expectation Maximization."""


def _run_options(f: F) -> F:
    options = [
        click.option("--preset", help="preset name or path to a .toml file (default: quickstart)"),
        click.option("--updater", help="M-step plugin, e.g. rnn-em"),
        click.option("--likelihood", help="pixel distribution plugin, e.g. bernoulli"),
        click.option("--network", help="component network plugin, e.g. fc"),
        click.option("--dataset", help="data set plugin, e.g. shapes"),
        click.option("-k", "--components", type=int, help="K, mixture components"),
        click.option("--steps", type=int, help="T, unrolled EM steps"),
        click.option("--epochs", type=int, help="maximum epochs"),
        click.option("--batch-size", type=int),
        click.option("--lr", type=float, help="Adam learning rate"),
        click.option("--train-size", type=int),
        click.option("--valid-size", type=int),
        click.option("--test-size", type=int),
        click.option("--seed", type=int),
        click.option("--device", help="auto, cpu, cuda or cuda:N"),
        click.option("--max-minutes", type=float, help="stop training after this many minutes"),
        click.option(
            "--init-from",
            metavar="RUN_DIR",
            help="start from this run's best weights and optimizer state (stage-wise training)",
        ),
        click.option(
            "--set",
            "assignments",
            multiple=True,
            metavar="KEY=VALUE",
            help="override any config key, e.g. --set noise.probability=0.2 (repeatable)",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def options_to_overrides(opts: dict[str, Any]) -> dict[str, Any]:
    """Map command-line options onto the config's sections (only those given)."""
    where = {
        "updater": ("updater", "name"),
        "likelihood": ("likelihood", "name"),
        "network": ("network", "name"),
        "dataset": ("dataset", "name"),
        "components": ("model", "components"),
        "steps": ("model", "steps"),
        "epochs": ("train", "epochs"),
        "batch_size": ("train", "batch_size"),
        "lr": ("train", "lr"),
        "train_size": ("dataset", "train_size"),
        "valid_size": ("dataset", "valid_size"),
        "test_size": ("dataset", "test_size"),
        "device": ("train", "device"),
        "max_minutes": ("train", "max_minutes"),
        "init_from": ("train", "init_from"),
    }
    out: dict[str, Any] = {}
    for key, value in opts.items():
        if value is None:
            continue
        if key == "seed":
            out["seed"] = value
        elif key in where:
            section, field = where[key]
            out.setdefault(section, {})[field] = value
    return out


@cli.command("run")
@_run_options
@click.option("--out", type=click.Path(path_type=Path), help="run folder (default: runs/<stamp>)")
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    help="continue the run in this folder from its last.pt, with its saved config",
)
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@click.option(
    "--tensorboard", is_flag=True, help="also log metrics for TensorBoard (grouping[tensorboard])"
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=1,
    help="data-parallel processes on this machine (wraps torchrun; one per GPU on CUDA)",
)
def run_command(
    preset: str | None,
    out: Path | None,
    resume_dir: Path | None,
    as_json: bool,
    tensorboard: bool,
    nproc: int,
    assignments: tuple[str, ...],
    **opts: Any,
) -> None:
    """Train a model, test it and write a run folder (with a grouping figure, figure.png), or
    continue one with --resume."""
    if resume_dir is not None:
        if preset is not None or nproc > 1 or (out is not None and out != resume_dir):
            raise RunDirError(
                "--resume takes the config and folder of the run and runs one process; "
                "drop --preset, --out and --nproc"
            )
        job = prepare_resume(resume_dir, options_to_overrides(opts), list(assignments))
        with ProgressReporter(err_console, job.config.train.epochs) as reporter:
            result = job.run(reporter, tensorboard=tensorboard)
        _print_result(result, as_json)
        return
    overrides = options_to_overrides(opts)
    if preset is None:
        preset = implied_preset(overrides, assignments_to_dict(list(assignments)))
        if preset != DEFAULT_PRESET:
            err_console.print(
                f"no --preset and no --dataset: using preset {preset!r}, the default of the "
                "likelihood you chose"
            )
    config = resolve(build_config(preset, overrides, list(assignments)))
    if nproc > 1 and distributed.env_world() == 1:
        out = out or RunDir.default_path(config.preset)
        extra = (["--json"] if as_json else []) + (["--tensorboard"] if tensorboard else [])
        sys.exit(distributed.launch(config.to_toml(), nproc, out, extra))
    main_rank = distributed.is_main_process()
    console = err_console if main_rank else Console(stderr=True, quiet=True)
    with ProgressReporter(console, config.train.epochs) as reporter:
        result = train(config, out, reporter=reporter, tensorboard=tensorboard)
    if not main_rank:
        return
    _print_result(result, as_json)


def _print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.summary, indent=2))
        return
    test = result.test
    table = Table(title=f"test scores ({test['images']} images)")
    for col in ("", "last step", "mean over steps"):
        table.add_column(col)
    table.add_row(
        "AMI",
        f"{test['ami']:.3f} ± {test['ami_std']:.3f}",
        f"{test['ami_mean_over_steps']:.3f} ± {test['ami_mean_over_steps_std']:.3f}",
    )
    table.add_row(
        "ARI",
        f"{test['ari']:.3f} ± {test['ari_std']:.3f}",
        f"{test['ari_mean_over_steps']:.3f} ± {test['ari_mean_over_steps_std']:.3f}",
    )
    out_console.print(table)
    s = result.summary
    out_console.print(
        f"test AMI {test['ami']:.3f}  epochs {s['epochs']} (best {s['best_epoch']})  "
        f"{s['train_images_per_s']:.0f} img/s  wall {s['wall_s']:.0f} s  -> {result.path}"
    )


@cli.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--dataset", help="another data set plugin (its options via --set dataset.KEY=V)")
@click.option("-k", "--components", type=int, help="K for evaluation (weights are shared)")
@click.option("--steps", type=int, help="T, EM steps to unroll (may exceed training's)")
@click.option("--split", type=click.Choice(SPLITS), default="test", show_default=True)
@click.option("--checkpoint", type=click.Choice(CHECKPOINTS), default="best", show_default=True)
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
    checkpoint: str,
    device: str | None,
    assignments: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score a trained run folder, possibly with another K, step count or data set."""
    result = evaluate(
        run_dir,
        dataset=dataset,
        components=components,
        steps=steps,
        assignments=assignments,
        split=split,  # type: ignore[arg-type]
        checkpoint=checkpoint,
        device=device,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in result["changed"].items())
    table = Table(title=f"{split} scores ({result['images']} sequences, {checkpoint} checkpoint)")
    for col in ("", "last step", "mean over steps"):
        table.add_column(col)
    for name in ("ami", "ari"):
        table.add_row(
            name.upper(),
            f"{result[name]:.3f} ± {result[name + '_std']:.3f}",
            f"{result[name + '_mean_over_steps']:.3f} ± "
            f"{result[name + '_mean_over_steps_std']:.3f}",
        )
    out_console.print(table)
    per_step = " ".join(f"{v:.2f}" for v in result["ami_per_step"])
    out_console.print(f"AMI per step: {per_step}")
    out_console.print(f"upper bound (last step): {result['upper_bound']:.2f}")
    out_console.print(f"changed from training: {changed or 'nothing'}")


@cli.command("list-plugins")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def list_plugins(as_json: bool) -> None:
    """List every registered likelihood, network, updater, data set and noise."""
    registry = get_registry()
    rows = [info.as_dict() for info in registry]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="grouping plugins")
    for col in ("kind", "name", "description", "package"):
        table.add_column(col)
    for row in rows:
        package = f"{row['package']} {row['version']}" if row["package"] else row["plugin"]
        table.add_row(row["kind"], row["name"], row["description"], package)
    out_console.print(table)
    for name, reason in registry.failures.items():
        err_console.print(f"[yellow]plugin {name!r} failed to load: {reason}[/yellow]")


@cli.group("data")
def data_group() -> None:
    """Check data files; export data sets in the original N-EM HDF5 layout."""


@data_group.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def data_check(path: Path, as_json: bool) -> None:
    """Validate a data file (.h5 in the original layout, or .npz) before training on it."""
    from grouping.data_tools import check_file

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
        out_console.print(table)
    for defect in report.defects:
        click.echo(f"error: {defect}", err=True)
    if not report.ok:
        raise click.exceptions.Exit(2)
    if not as_json:
        out_console.print("ok: no defects found")


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
    from grouping.data_tools import export_dataset

    config = build_config(preset, options_to_overrides(opts), list(assignments))
    result = export_dataset(config, out, overwrite=force)
    sizes = ", ".join(f"{name} {n}" for name, n in result.samples.items())
    h, w, c = result.image_shape
    kind = "binary" if result.binary else "grey"
    out_console.print(
        f"wrote {result.path}: {sizes} samples, {result.frames} frame(s) of {h}x{w}x{c} ({kind})"
    )


for _command in COMMANDS:  # visualize, plot, runs (grouping/cli_inspect.py)
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="grouping")


if __name__ == "__main__":  # pragma: no cover
    main()
