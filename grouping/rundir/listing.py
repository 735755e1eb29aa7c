"""``grouping runs``: what each run folder in a folder says about itself."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grouping.config.loading import read_toml
from grouping.errors import GroupingError, RunDirError
from grouping.rundir.folder import CONFIG, SUMMARY, RunDir


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
