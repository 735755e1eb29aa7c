"""The run folder: the resolved config, per-epoch metrics, checkpoints and the final summary.

::

    runs/<stamp>-<preset>/
      config.toml            resolved; ``grouping run --preset RUN/config.toml`` repeats the run
      metrics.jsonl          one JSON record per epoch
      checkpoints/best.pt    best validation loss so far
      checkpoints/last.pt    end of the latest epoch
      summary.json           test scores, epochs, throughput, wall time, data source, config
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grouping.config import RunConfig, load_config_file
from grouping.errors import RunDirError

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


@dataclass
class RunDir:
    path: Path

    @staticmethod
    def default_path(preset: str, root: Path = Path("runs")) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = Path(preset).stem if preset.endswith(".toml") else Path(preset).name
        path = root / f"{stamp}-{label}"
        n = 1
        while path.exists():
            n += 1
            path = root / f"{stamp}-{label}-{n}"
        return path

    @classmethod
    def create(cls, path: Path, config: RunConfig) -> RunDir:
        """A new run folder; an existing folder that holds anything is refused, never overwritten."""
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()):
            what = "a run" if (path / CONFIG).exists() else "other files"
            raise RunDirError(f"--out {path} already holds {what}; choose an empty or new folder")
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
            (path / CONFIG).write_text(config.to_toml(), encoding="utf-8")
        except OSError as exc:
            raise RunDirError(f"cannot write the run folder {path}: {exc.strerror}") from None
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run folder (one that holds a ``config.toml``)."""
        if not (path / CONFIG).is_file():
            raise RunDirError(f"{path} is not a run folder (no {CONFIG})")
        return cls(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def best(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def write_summary(self, summary: dict[str, Any]) -> None:
        tmp = self.path / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path / SUMMARY)

    def summary(self) -> dict[str, Any]:
        path = self.path / SUMMARY
        if not path.is_file():
            raise RunDirError(f"{self.path} has no {SUMMARY}: the run has not finished")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data


def final_run(path: Path) -> Path:
    """The run folder that holds a run's weights: the last stage's for a stage-wise run (whose
    config has ``stages``), the folder itself otherwise."""
    config = path / CONFIG
    if config.is_file():
        stages = load_config_file(config).stages
        if stages:
            return final_run(path / stages[-1].name)
    return path
