"""``grouping plot``: training curves of several runs and test AMI per EM step in one PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grouping.config.loading import read_toml
from grouping.errors import ConfigError, RunDirError
from grouping.figures.resolution import DPI, check_dpi
from grouping.rundir.folder import METRICS, SUMMARY, RunDir


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


def run_label(rundir: RunDir) -> str:
    """A run's name in the legend: its folder and its updater and data set
    (``20250101-120000-quickstart (n-em, shapes)``), so that runs of two updaters tell apart."""
    try:
        config = read_toml(rundir.config_path)
    except ConfigError:
        return rundir.path.name
    said = []
    for section in ("updater", "dataset"):
        part = config.get(section)
        if isinstance(part, dict) and isinstance(part.get("name"), str):
            said.append(part["name"])
    return f"{rundir.path.name} ({', '.join(said)})" if said else rundir.path.name


def _step_curves(label: str, scores: dict[str, Any]) -> Any:
    from grouping.figures.drawing import Curves

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
    dpi: int = DPI,
) -> Path:
    """Overlay the training curves of several runs (from ``metrics.jsonl``) and their test AMI per
    EM step (from ``summary.json``, plus any ``grouping evaluate --json`` files) in one PNG of
    ``dpi`` dots per inch. The Python API of ``grouping plot``."""
    from grouping.figures.drawing import curves_figure, save

    check_dpi(dpi)

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
        c = _step_curves(run_label(rundir), scores)
        c.records = records
        curves.append(c)
    for item in evaluations:
        path = Path(item)
        curves.append(_step_curves(path.stem, read_evaluation(path)))
    return save(curves_figure(curves), Path(out), dpi)
