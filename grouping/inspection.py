"""Looking at runs: load a trained run, draw its groupings, plot its curves, list a folder of runs.

The Python API behind ``grouping visualize``, ``grouping plot`` and ``grouping runs``. It reads only
the run folder (``config.toml``, ``checkpoints/``, ``metrics.jsonl``, ``summary.json``) and builds
plugins through the registry, so it works for any installed likelihood, network or data set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grouping.build import build_dataset, build_model, build_noise, resolve
from grouping.checkpoint import load_checkpoint
from grouping.config import load_config_file, read_toml
from grouping.cpu_linear import use_cpu_matmul
from grouping.em import NeuralEM
from grouping.errors import ConfigError, GroupingError, RunDirError
from grouping.evaluate import frames_for
from grouping.interfaces import SPLITS, Dataset, Noise, Split, SplitName
from grouping.registry import Registry, get_registry
from grouping.rundir import CONFIG, METRICS, SUMMARY, RunDir

#: The file ``grouping run`` writes its grouping figure to, inside the run folder.
FIGURE = "figure.png"
#: Samples drawn in that figure.
RUN_FIGURE_SAMPLES = 4


@dataclass
class LoadedRun:
    """A trained run rebuilt from its folder: resolved config, data set, model with the best
    weights (``checkpoints/best.pt``, else ``last.pt``) and noise, all on the CPU."""

    path: Path
    config: Any  # RunConfig
    dataset: Dataset
    model: NeuralEM
    noise: Noise
    checkpoint: Path


def load_run(
    run_dir: Path | str, frames: int | None = None, registry: Registry | None = None
) -> LoadedRun:
    """Rebuild a run from its folder. ``frames`` asks the data set for that many frames per sample
    (default: the run's steps + 1)."""
    registry = registry or get_registry()
    rundir = RunDir.open(Path(run_dir))
    config = resolve(load_config_file(rundir.config_path), registry)
    checkpoint = rundir.best if rundir.best.is_file() else rundir.last
    payload = load_checkpoint(checkpoint)
    dataset = build_dataset(config, registry, frames=frames)
    model = build_model(config, dataset.image_shape, registry)
    try:
        model.load_state_dict(payload["model"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(
            f"{checkpoint} does not fit the model of {rundir.config_path}: {first[:200]}"
        ) from None
    use_cpu_matmul(model, config.train.cpu_matmul, torch.device("cpu"))
    noise = build_noise(config, registry)
    model.eval()
    return LoadedRun(rundir.path, config, dataset, model, noise, checkpoint)


# --------------------------------------------------------------------------------------------------
# grouping figures


@torch.no_grad()
def grouping_panels(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    *,
    samples: int,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    title: str = "",
) -> Any:
    """Run the model on the first ``samples`` of a split, keeping every step, and collect what a
    grouping figure shows (a :class:`grouping.figures.GroupingPanels`)."""
    from grouping.figures import GroupingPanels

    device = device or next(model.parameters()).device
    steps = model.steps if steps is None else steps
    n = min(samples, len(split))
    if n < 1:
        raise GroupingError("the split is empty: there is nothing to draw")
    features, groups = split.get(np.arange(n))
    try:
        features, groups = frames_for(features.to(device), groups.to(device), steps + 1)
    except ValueError as exc:
        raise ConfigError(f"cannot draw {steps} EM steps: {exc}") from None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        weights = [0.0] * (steps - 1) + [1.0]
        out = model(noise(features, generator), features, generator, steps=steps, weights=weights)
    finally:
        model.train(was_training)
    return GroupingPanels(
        frames=features[:, 1:].float().cpu().numpy(),  # (N, T, H, W, C): frame t+1 scores step t
        psi=out.psi.float().cpu().numpy(),  # (N, T, K, H, W, C)
        gamma=out.gamma[:, 1:, ..., 0].float().cpu().numpy(),  # (N, T, K, H, W)
        groups=groups[:, 1:].cpu().numpy(),  # (N, T, H, W)
        title=title,
        step_numbers=list(range(1, steps + 1)),
    )


def draw_groupings(
    model: NeuralEM,
    noise: Noise,
    split: Split,
    out: Path,
    *,
    samples: int = RUN_FIGURE_SAMPLES,
    steps: int | None = None,
    seed: int = 0,
    title: str = "",
) -> Path:
    """Write the grouping figure of a model on a split: the static layout (paper Figure 3) when the
    split holds one frame per sample, the sequential layout (Figures 4 and 7) otherwise."""
    from grouping.figures import save, sequential_figure, static_figure

    panels = grouping_panels(
        model, noise, split, samples=samples, steps=steps, seed=seed, title=title
    )
    draw = sequential_figure if split.frames > 1 else static_figure
    return save(draw(panels), out)


def visualize(
    run_dir: Path | str,
    split: SplitName = "test",
    samples: int = RUN_FIGURE_SAMPLES,
    steps: int | None = None,
    out: Path | str | None = None,
    seed: int = 0,
) -> Path:
    """Draw a trained run's groupings on ``samples`` samples of ``split`` and return the PNG's path
    (default ``RUN_DIR/figure.png``). ``steps`` unrolls a different number of EM steps than the run
    was trained with. The Python API of ``grouping visualize``."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    if steps is not None and steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    frames = None if steps is None else steps + 1
    run = load_run(run_dir, frames=frames)
    t = run.model.steps if steps is None else steps
    target = Path(out) if out is not None else run.path / FIGURE
    title = f"{run.path.name}: {split} split, {t} EM steps ({run.checkpoint.name})"
    return draw_groupings(
        run.model,
        run.noise,
        run.dataset.split(split),
        target,
        samples=samples,
        steps=steps,
        seed=seed,
        title=title,
    )


# --------------------------------------------------------------------------------------------------
# run listing


@dataclass
class RunInfo:
    """One row of ``grouping runs``. Values a run has not written yet are None."""

    path: Path
    finished: bool
    preset: str | None = None
    updater: str | None = None
    likelihood: str | None = None
    dataset: str | None = None
    epochs: int | None = None
    best_valid_loss: float | None = None
    test_ami: float | None = None
    wall_s: float | None = None
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        if self.problem:
            return f"unreadable: {self.problem}"
        return "finished" if self.finished else "unfinished"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.name,
            "status": self.status,
            "finished": self.finished,
            "preset": self.preset,
            "updater": self.updater,
            "likelihood": self.likelihood,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "best_valid_loss": self.best_valid_loss,
            "test_ami": self.test_ami,
            "wall_s": self.wall_s,
        }


def _name(config: dict[str, Any], section: str) -> str | None:
    value = config.get(section)
    return str(value.get("name")) if isinstance(value, dict) and "name" in value else None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def run_info(path: Path) -> RunInfo:
    """What a run folder says about itself. A run without ``summary.json`` is unfinished: its epochs,
    best validation loss and wall time come from ``metrics.jsonl``."""
    info = RunInfo(path=path, finished=(path / SUMMARY).is_file())
    try:
        config = read_toml(path / CONFIG)
        rundir = RunDir(path)
        records = rundir.metrics()
        summary = rundir.summary() if info.finished else {}
    except (GroupingError, json.JSONDecodeError, OSError) as exc:
        info.problem = str(exc).splitlines()[0][:120]
        return info
    info.preset = str(config.get("preset")) if "preset" in config else None
    info.updater = _name(config, "updater")
    info.likelihood = _name(config, "likelihood")
    info.dataset = _name(config, "dataset")
    losses = [v for r in records if (v := _finite(r.get("valid_loss"))) is not None]
    if summary:
        info.epochs = int(summary.get("epochs", len(records)))
        info.best_valid_loss = _finite(summary.get("best_valid_loss"))
        info.test_ami = _finite(summary.get("test", {}).get("ami"))
        info.wall_s = _finite(summary.get("wall_s"))
    else:
        info.epochs = len(records)
        info.best_valid_loss = min(losses) if losses else None
        info.wall_s = _finite(records[-1].get("wall_s")) if records else None
    return info


def runs(folder: Path | str = "runs") -> list[RunInfo]:
    """Every run folder (a folder holding ``config.toml``) directly inside ``folder``, by name;
    ``folder`` itself when it is a run. The Python API of ``grouping runs``."""
    root = Path(folder)
    if not root.is_dir():
        raise RunDirError(f"no such folder: {root}")
    if (root / CONFIG).is_file():
        return [run_info(root)]
    return [run_info(p) for p in sorted(root.iterdir()) if (p / CONFIG).is_file()]


# --------------------------------------------------------------------------------------------------
# curves


def read_evaluation(path: Path) -> dict[str, Any]:
    """Scores from a ``grouping evaluate --json`` file or a ``summary.json``: the object that holds
    ``ami_per_step``, at the top level or under ``"test"``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"evaluation file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"cannot read evaluation file {path}: {exc}") from None
    for candidate in (data, data.get("test") if isinstance(data, dict) else None):
        if isinstance(candidate, dict) and isinstance(candidate.get("ami_per_step"), list):
            return candidate
    raise RunDirError(
        f"{path} holds no ami_per_step list (expected `grouping evaluate --json` output or a "
        "summary.json)"
    )


def _step_curves(label: str, scores: dict[str, Any]) -> Any:
    from grouping.figures import Curves

    quartiles = scores.get("ami_per_step_quartiles")
    return Curves(
        label=label,
        ami_per_step=[float(v) for v in scores.get("ami_per_step", [])],
        ami_quartiles=quartiles if isinstance(quartiles, dict) else None,
    )


def plot(
    run_dirs: list[Path | str] | tuple[Path | str, ...],
    out: Path | str = "curves.png",
    evaluations: list[Path | str] | tuple[Path | str, ...] = (),
) -> Path:
    """Overlay the training curves of several runs (from ``metrics.jsonl``) and their test AMI per
    EM step (from ``summary.json``, plus any ``grouping evaluate --json`` files) in one PNG. The
    Python API of ``grouping plot``."""
    from grouping.figures import curves_figure, save

    if not run_dirs and not evaluations:
        raise ConfigError("give at least one run folder or evaluation file to plot")
    curves = []
    for item in run_dirs:
        rundir = RunDir.open(Path(item))
        try:
            records = rundir.metrics()
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{rundir.path / METRICS} is corrupt: {exc}") from None
        scores: dict[str, Any] = {}
        if (rundir.path / SUMMARY).is_file():
            scores = read_evaluation(rundir.path / SUMMARY)
        c = _step_curves(rundir.path.name, scores)
        c.records = records
        curves.append(c)
    for item in evaluations:
        path = Path(item)
        curves.append(_step_curves(path.stem, read_evaluation(path)))
    return save(curves_figure(curves), Path(out))
