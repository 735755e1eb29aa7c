"""``grouping run``: train a model from a preset and overrides, resume one, or launch DDP."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from grouping.cli.output import console
from grouping.cli.plugins import warn_broken
from grouping.cli.progress import ProgressReporter
from grouping.config.loading import assignments_to_dict, build_config, implied_preset
from grouping.config.schema import DEFAULT_PRESET, RunConfig
from grouping.engine.assembly import resolve
from grouping.errors import RunDirError
from grouping.rundir.folder import RunDir
from grouping.training import distributed
from grouping.training.api import train
from grouping.training.resume import prepare_resume
from grouping.training.run import RunResult
from grouping.training.stages import is_stagewise_root, resume_stages

F = TypeVar("F", bound=Callable[..., Any])


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


def _process_options(f: F) -> F:
    """How ``grouping run`` runs: where, resumed or not, how many processes, what it prints."""
    options = [
        click.option(
            "--out",
            type=click.Path(path_type=Path),
            help="run folder (default: runs/<stamp>-<preset>, plus the updater and data set where they "
            "differ from the preset's)",
        ),
        click.option(
            "--resume",
            "resume_dir",
            type=click.Path(path_type=Path),
            help="continue the run in this folder from its last.pt, with its saved config",
        ),
        click.option("--json", "as_json", is_flag=True, help="print the summary as JSON"),
        click.option(
            "--tensorboard",
            is_flag=True,
            help="also log metrics for TensorBoard (grouping[tensorboard])",
        ),
        click.option(
            "--nproc",
            type=click.IntRange(min=1),
            default=1,
            help="data-parallel processes on this machine (wraps torchrun; one per GPU on CUDA)",
        ),
        click.option(
            "--max-restarts",
            type=click.IntRange(min=0),
            default=0,
            show_default=True,
            help="with --nproc: times torchrun restarts the group after a rank dies (it resumes)",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("run")
@_run_options
@_process_options
def run_command(
    preset: str | None,
    out: Path | None,
    resume_dir: Path | None,
    as_json: bool,
    tensorboard: bool,
    nproc: int,
    max_restarts: int,
    assignments: tuple[str, ...],
    **opts: Any,
) -> None:
    """Train a model, test it and write a run folder (with a grouping figure, figure.png), or
    continue one with --resume."""
    extra = (["--json"] if as_json else []) + (["--tensorboard"] if tensorboard else [])
    launching = nproc > 1 and distributed.env_world() == 1
    overrides, sets = options_to_overrides(opts), list(assignments)
    if resume_dir is not None:
        if preset is not None or (out is not None and out != resume_dir):
            raise RunDirError(
                "--resume takes the config and folder of the run; drop --preset and --out"
            )
        if launching:  # check here, in one line, before torchrun starts N processes
            prepare_resume(resume_dir, overrides, sets, world=nproc).rundir.close()
            args = ["run", "--resume", str(resume_dir), *extra]
            sys.exit(distributed.launch(nproc, args, max_restarts))
        _resume(resume_dir, overrides, sets, tensorboard, as_json)
        return
    config = _config(preset, overrides, sets)
    if launching:
        where = out or RunDir.default_path(config.preset, config=config)
        _launch(config, where, nproc, max_restarts, extra)
    main_rank = distributed.is_main_process()
    with ProgressReporter(
        console(stderr=True, quiet=not main_rank), config.train.epochs
    ) as reporter:
        result = train(config, out, reporter=reporter, tensorboard=tensorboard)
    if main_rank:
        _print_result(result, as_json, reporter.unit)


def _launch(config: RunConfig, out: Path, nproc: int, max_restarts: int, extra: list[str]) -> None:
    """Re-run the resolved config under torchrun, with ``train.resume = "auto"`` so that a group
    torchrun restarts after a rank died continues from ``last.pt`` by itself."""
    auto = config.model_copy(update={"train": config.train.model_copy(update={"resume": "auto"})})
    sys.exit(distributed.launch_config(auto.to_toml(), nproc, out, extra, max_restarts))


def _resume(
    folder: Path,
    overrides: dict[str, Any],
    assignments: list[str],
    tensorboard: bool,
    as_json: bool,
) -> None:
    if is_stagewise_root(folder):  # the plan's stages: finished ones kept, the stopped one resumed
        with ProgressReporter(console(stderr=True), 1) as reporter:
            result = resume_stages(folder, reporter, tensorboard=tensorboard)
        _print_result(result, as_json, reporter.unit)
        return
    job = prepare_resume(folder, overrides, assignments)
    with ProgressReporter(console(stderr=True), job.config.train.epochs) as reporter:
        result = job.run(reporter, tensorboard=tensorboard)
    _print_result(result, as_json, reporter.unit)


def _config(preset: str | None, overrides: dict[str, Any], assignments: list[str]) -> RunConfig:
    """The run's config, resolved; without --preset, say which preset the likelihood implied."""
    if preset is None:
        preset = implied_preset(overrides, assignments_to_dict(assignments))
        if preset != DEFAULT_PRESET:
            console(stderr=True).print(
                f"no --preset and no --dataset: using preset {preset!r}, the default of the "
                "likelihood you chose"
            )
    config = resolve(build_config(preset, overrides, assignments))
    warn_broken()  # the run does not need them, but their author may want to know
    return config


def _print_result(result: RunResult, as_json: bool, unit: str = "images") -> None:
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
    out = console()
    out.print(table)
    s = result.summary
    out.print(
        f"test AMI {test['ami']:.3f}  epochs {s['epochs']} (best {s['best_epoch']})  "
        f"{s['train_images_per_s']:.0f} {unit}/s  wall {s['wall_s']:.0f} s  -> {result.path}"
    )
