"""The run folder: the resolved config, per-epoch metrics, checkpoints and the final summary.

::

    runs/<stamp>-<preset>[-<updater>][-<dataset>]/   (those two where they differ from the preset's)
      config.toml            resolved; ``grouping run --preset RUN/config.toml`` repeats the run
      metrics.jsonl          one JSON record per epoch
      checkpoints/best.pt    best validation loss so far
      checkpoints/last.pt    end of the latest epoch
      summary.json           test scores, epochs, throughput, wall time, data source, config
      .lock                  held by the process training in the folder (see grouping.lock)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grouping.config.loading import load_preset, read_toml
from grouping.config.schema import RunConfig
from grouping.errors import ConfigError, RunDirError
from grouping.rundir.lock import LOCK_NAME, RunLock

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
#: What a stage-wise ``summary.json`` keeps of each stage's own summary.
STAGE_KEYS = ("test", "epochs", "best_epoch", "best_valid_loss", "train_s", "train_images_per_s")
#: ``summary.json``'s status for a run still training (a snapshot shipped from it).
IN_PROGRESS = "in progress"


@dataclass
class RunDir:
    path: Path
    lock: RunLock | None = field(default=None, repr=False)

    @staticmethod
    def default_path(
        preset: str, root: Path = Path("runs"), *, config: RunConfig | None = None
    ) -> Path:
        """``runs/<stamp>-<preset>``, plus the updater and the data set where ``config`` changed
        them from the preset's (``runs/<stamp>-quickstart-n-em``), so such runs tell apart."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        label = Path(preset).stem if preset.endswith(".toml") else Path(preset).name
        label = "-".join([label, *changed_plugins(preset, config)])
        path = root / f"{stamp}-{label}"
        n = 1
        while path.exists():
            n += 1
            path = root / f"{stamp}-{label}-{n}"
        return path

    @classmethod
    def create(cls, path: Path, config: RunConfig) -> RunDir:
        """A new run folder, locked; a folder that holds anything is refused, never overwritten."""
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path} exists and is not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the run folder {path}: {exc.strerror}") from None
        existed = (path / LOCK_NAME).exists()
        lock = RunLock(path).acquire()  # before looking inside: two runs may race for one folder
        if never_checkpointed(path):  # a run that failed before its first epoch ended
            clear_dead_start(path)
        if any(p.name != LOCK_NAME for p in path.iterdir()):
            lock.release()
            if not existed:
                (path / LOCK_NAME).unlink(missing_ok=True)
            what = "a run" if (path / CONFIG).exists() else "other files"
            hint = f"; continue it with --resume {path}" if what == "a run" else ""
            raise RunDirError(
                f"--out {path} already holds {what}; choose an empty or new folder{hint}"
            )
        try:
            (path / "checkpoints").mkdir(parents=True, exist_ok=True)
            (path / CONFIG).write_text(config.to_toml(), encoding="utf-8")
        except OSError as exc:
            lock.release()
            raise RunDirError(f"cannot write the run folder {path}: {exc.strerror}") from None
        return cls(path, lock)

    @classmethod
    def open(cls, path: Path, lock: bool = False) -> RunDir:
        """An existing run folder (one that holds a ``config.toml``); with ``lock``, locked."""
        if not (path / CONFIG).is_file():
            raise RunDirError(f"{path} is not a run folder (no {CONFIG})")
        if not lock:
            return cls(path)
        held = RunLock(path).acquire()
        remove_leftovers(path)  # no one else writes here while the lock is held
        return cls(path, held)

    def close(self) -> None:
        """Release the lock (the process ending releases it too). A run that has ended leaves no
        ``.lock`` behind: nothing may train in its folder again, so no other process waits on it."""
        if self.lock is None:
            return
        if self.lock.held and (self.path / SUMMARY).is_file():
            self.lock.path.unlink(missing_ok=True)  # still held: no one can take it meanwhile
        self.lock.release()

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def best(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def last(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    def tested(self, test_checkpoint: str) -> Path:
        """The checkpoint a run with this ``train.test_checkpoint`` scores, hands on to the next
        stage and starts ``--init-from`` from: ``last.pt`` for "last", else ``best.pt``."""
        return self.last if test_checkpoint == "last" else self.best

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records; a torn last line (a crash mid-write) is skipped."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def keep_metrics_until(self, epoch: int) -> None:
        """Drop records after ``epoch`` (written before a crash, but not in the checkpoint being
        resumed), so a resumed run continues ``metrics.jsonl`` without duplicates."""
        kept = [
            r for r in self.metrics() if isinstance(r.get("epoch"), int) and r["epoch"] <= epoch
        ]
        tmp = self.path / (METRICS + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        os.replace(tmp, self.path / METRICS)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Strict JSON (a non-finite number, such as the best loss of a run that never had a
        finite one, is written as null), replaced atomically."""
        tmp = self.path / (SUMMARY + ".tmp")
        text = json.dumps(strict_json(summary), indent=2, allow_nan=False)
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, self.path / SUMMARY)

    def summary(self) -> dict[str, Any]:
        path = self.path / SUMMARY
        if not path.is_file():
            raise RunDirError(f"{self.path} has no {SUMMARY}: the run has not finished")
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data


def changed_plugins(preset: str, config: RunConfig | None) -> list[str]:
    """The updater and data set names of ``config`` that differ from its preset's (none where the
    preset cannot be read), as they go into a run folder's name."""
    if config is None:
        return []
    try:
        base = load_preset(preset)
    except ConfigError:
        return []
    names = []
    for section, now in (("updater", config.updater.name), ("dataset", config.dataset.name)):
        given = base.get(section)
        if isinstance(given, dict) and given.get("name") not in (None, now):
            names.append(now.replace("/", "-"))
    return names


#: What a run writes before its first checkpoint: a folder holding only these is a dead start.
EARLY_FILES = frozenset({CONFIG, METRICS, "checkpoints", "tensorboard", LOCK_NAME})


def never_checkpointed(path: Path) -> bool:
    """A run folder whose run stopped before its first ``last.pt`` (killed while writing its
    first checkpoints, or out of disk in epoch 1): it cannot be resumed, so nothing in it is kept.
    Temporary files of an interrupted write do not count as content."""
    names = {p.name for p in path.iterdir() if not is_leftover(p)}
    ckpts = path / "checkpoints"
    kept = {p.name for p in ckpts.iterdir() if not is_leftover(p)} if ckpts.is_dir() else set()
    dead = CONFIG in names and names <= EARLY_FILES and "last.pt" not in kept
    return dead and (ckpts.is_dir() or not ckpts.exists())


def is_leftover(path: Path) -> bool:
    """A temporary file of a write that never finished (``.last.pt.x1y2.tmp``, ``summary.json.tmp``):
    every file here is written to such a name, then renamed."""
    return path.name.endswith(".tmp") and path.is_file()


def remove_leftovers(path: Path) -> None:
    """Delete the temporary files a killed run left in its folder (each as big as a checkpoint)."""
    for folder in (path, path / "checkpoints"):
        if folder.is_dir():
            for item in folder.iterdir():
                if is_leftover(item):
                    item.unlink(missing_ok=True)


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, as strict JSON readers require."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def clear_dead_start(path: Path) -> None:
    """Remove what a run left before its first checkpoint, so the folder can be run into again."""
    remove_leftovers(path)
    for name in (CONFIG, METRICS):
        (path / name).unlink(missing_ok=True)
    for name in ("checkpoints", "tensorboard"):
        folder = path / name
        if folder.is_dir():
            shutil.rmtree(folder)


def stage_folders(path: Path) -> list[Path]:
    """A stage-wise run's stage folders in its plan's order (its config's ``stages``); none for a
    plain run, a folder without a config, or a plan with a stage name that is not a folder name."""
    config = path / CONFIG
    # the raw file is enough to find the stages; validating it is the caller's business
    stages = read_toml(config).get("stages") if config.is_file() else None
    if not isinstance(stages, list):
        return []
    names = [s.get("name") if isinstance(s, dict) else None for s in stages]
    if not all(isinstance(n, str) and n and n not in (".", "..") for n in names):
        return []
    return [path / str(n) for n in names]


def final_run(path: Path) -> Path:
    """The run folder that holds a run's weights: the last stage's for a stage-wise run (whose
    config has ``stages``), the folder itself otherwise."""
    stages = stage_folders(path)
    return final_run(stages[-1]) if stages else path
